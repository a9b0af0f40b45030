import type { CommandSpec } from '../command.js';
import { buildCommand } from './build.js';
import { fsckCommand } from './fsck.js';
import { imagesCommand } from './images.js';
import { importCommand } from './import.js';
import { loadCommand } from './load.js';
import { parseCommand } from './parse.js';
import { saveCommand } from './save.js';

/** Every command the CLI offers, in the order `--help` lists them. */
export const commands: readonly CommandSpec<any>[] = [buildCommand, parseCommand, importCommand, loadCommand, saveCommand, imagesCommand, fsckCommand];
