import type { CommandSpec } from '../command.js';
import { buildCommand } from './build.js';
import { importCommand } from './import.js';
import { fsckCommand } from './fsck.js';
import { imagesCommand } from './images.js';
import { historyCommand } from './history.js';
import { inspectCommand } from './inspect.js';
import { rmiCommand } from './rmi.js';
import { pruneCommand } from './prune.js';
import { dfCommand } from './df.js';
import { runCommand } from './run.js';
import { loadCommand } from './load.js';
import { parseCommand } from './parse.js';
import { saveCommand } from './save.js';
import { pullCommand } from './pull.js';
import { pushCommand } from './push.js';
import { tagCommand } from './tag.js';
import { loginCommand } from './login.js';
import { logoutCommand } from './logout.js';

/** Every command the CLI offers, in the order `--help` lists them. */
export const commands: readonly CommandSpec<any>[] = [buildCommand, parseCommand, importCommand, loadCommand, saveCommand, imagesCommand, historyCommand, inspectCommand, rmiCommand, pruneCommand, dfCommand, runCommand, pullCommand, pushCommand, tagCommand, loginCommand, logoutCommand, fsckCommand];

/** docker's management-command spellings (`tsbuild image ls`, `tsbuild system df`). */
export const commandGroups: ReadonlyArray<{ readonly name: string; readonly describe: string; readonly commands: ReadonlyArray<readonly [string, CommandSpec<any>]> }> = [
  {
    name: 'image',
    describe: 'Manage images (image ls, inspect, history, rm, prune, tag, pull, push, save, load, import)',
    commands: [
      ['ls', imagesCommand],
      ['inspect', inspectCommand],
      ['history', historyCommand],
      ['rm', rmiCommand],
      ['prune', pruneCommand],
      ['tag', tagCommand],
      ['pull', pullCommand],
      ['push', pushCommand],
      ['save', saveCommand],
      ['load', loadCommand],
      ['import', importCommand],
    ],
  },
  { name: 'system', describe: 'Store-wide information and cleanup (system df, prune)', commands: [['df', dfCommand], ['prune', pruneCommand]] },
];
