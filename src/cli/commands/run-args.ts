// How `run` splits its words (loaded at start-up: keep it free of imports).

/** run's flags that take a value (`-e K=V`, `--env K=V`), and the global ones. */
const VALUE_FLAGS = new Set(['e', 'env', 'env-file', 'w', 'workdir', 'u', 'user', 'entrypoint', 'v', 'volume', 'network', 'platform', 'root', 'log-level']);
const BOOLEAN_FLAGS = new Set(['rm', 'i', 'interactive', 't', 'tty', 'read-only', 'h', 'help', 'version']);

/**
 * As `docker run`: run's own flags come before IMAGE; from IMAGE on, every word belongs to the
 * command (`run IMAGE ls -l /`, `run IMAGE sh -c 'echo $0' --rm`). Returns the words for yargs
 * as `FLAGS... IMAGE -- COMMAND...`. A `--` right after IMAGE is dropped (older tsbuild
 * needed it; no one means to exec `--`); any later `--` is the command's. A `--` before
 * IMAGE ends run's flags (`run --rm -- IMAGE`). Without IMAGE (`run --help`) nothing changes.
 */
export function splitRunArgs(words: readonly string[]): string[] {
  const flags: string[] = [];
  let i = 0;
  for (; i < words.length; i++) {
    const w = words[i]!;
    if (w === '--') {
      i++;
      break;
    }
    if (!w.startsWith('-') || w === '-') break;
    const names = w.startsWith('--') ? [w.slice(2).split('=')[0]!] : [...w.slice(1).split('=')[0]!];
    if (!names.every((n) => VALUE_FLAGS.has(n) || BOOLEAN_FLAGS.has(n))) {
      // An unknown flag must not take IMAGE as its value: given a value of its own, it is
      // reported by yargs' strict mode ("Unknown argument").
      flags.push(`--${w.replace(/^--?/, '').split('=')[0]!}=`);
      continue;
    }
    flags.push(w);
    // --env K=V, -e K=V, -ie K=V take the next word; --env=K=V and -eK=V do not.
    const takesNext = w.startsWith('--') ? !w.includes('=') && VALUE_FLAGS.has(w.slice(2)) : VALUE_FLAGS.has(w.at(-1)!) && !w.includes('=');
    if (takesNext && i + 1 < words.length) flags.push(words[++i]!);
  }
  if (i >= words.length) return flags;
  const image = words[i]!;
  const rest = words.slice(i + 1);
  if (rest[0] === '--') rest.shift();
  return [...flags, image, '--', ...rest];
}
