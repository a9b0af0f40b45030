import { defineCommand } from '../command.js';
import { TsbuildError } from '../../errors.js';

// Filled in by the Dockerfile frontend work (issue 2).
export const parseCommand = defineCommand({
  command: 'parse <file>',
  describe: 'Parse a Dockerfile and print its syntax tree (FILE "-" reads stdin)',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true, describe: 'Dockerfile path, or - for stdin' })
      .option('dump', { type: 'boolean', default: false, describe: "Print BuildKit's parser dump format" })
      .option('format', { choices: ['dump', 'json'] as const, describe: 'Output format' }),
  run: async () => {
    throw new TsbuildError('UNSUPPORTED', 'parse is not implemented yet');
  },
});
