import { defineCommand } from '../command.js';
import { fsckStore, type FsckProblem } from '../../store/index.js';

function describe(p: FsckProblem): string {
  switch (p.kind) {
    case 'blob-corrupt':
      return `blob ${p.digest} is corrupt: its content hashes to ${p.actual} (${p.path})`;
    case 'stray-file':
      return `stray file ${p.path} under blobs/`;
    case 'tag-missing-blob':
      return `tag ${p.name ?? '(unnamed)'} points at ${p.digest}, which is missing`;
    case 'missing-blob':
      return `${p.referencedBy} references ${p.digest}, which is missing`;
    case 'invalid-json':
      return `${p.digest} cannot be read: ${p.message}`;
    case 'stale-temp':
      return `leftover temporary ${p.path}${p.pid ? ` of process ${p.pid}, which has exited` : ''}`;
    case 'stale-lock':
      return `lock file of process ${p.pid}, which has exited`;
    default:
      return p satisfies never;
  }
}

/** Leftovers of killed processes are harmless (invisible, removed by gc); damage is not. */
const HARMLESS = new Set<FsckProblem['kind']>(['stale-temp', 'stale-lock']);

export const fsckCommand = defineCommand({
  builder: (y) => y.option('quick', { type: 'boolean', default: false, describe: 'Check structure and references only, do not re-hash blobs' }),
  run: async (args, ctx) => {
    const store = await ctx.store();
    const problems = await fsckStore(store, { verifyContent: !args.quick, signal: ctx.io.signal });
    let damaged = 0;
    for (const p of problems) {
      const harmless = HARMLESS.has(p.kind);
      if (!harmless) damaged++;
      ctx.io.stdout.write(`${harmless ? 'note' : 'problem'}: ${describe(p)}\n`);
    }
    ctx.io.stdout.write(damaged === 0 ? `store ${store.root} is consistent\n` : `${damaged} problem(s) in ${store.root}\n`);
    return damaged === 0 ? 0 : 1;
  },
});
