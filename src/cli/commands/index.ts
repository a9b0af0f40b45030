import type { CommandSpec } from '../command.js';
import { parseCommand } from './parse.js';

/** Every command the CLI offers, in the order `--help` lists them. */
export const commands: readonly CommandSpec<any>[] = [parseCommand];
