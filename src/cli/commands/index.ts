import type { CommandSpec } from '../command.js';
import { splitRunArgs } from './run-args.js';

/**
 * One entry of the command list: what `--help` shows and yargs matches, and the module with
 * the flags and the handler, loaded only when that command runs (or its --help is shown), so
 * that start-up does not load every command's dependencies.
 */
export interface CommandEntry {
  readonly command: string;
  readonly describe: string;
  /**
   * For a command whose trailing words belong to someone else (`run IMAGE CMD...`): gets the
   * words after the command's name and returns them rewritten for yargs, typically with a
   * `--` where the command's own flags end. yargs alone cannot stop at the first positional
   * of one command (its halt-at-non-option stops at the command's name).
   */
  readonly splitArgs?: (words: readonly string[]) => string[];
  load(): Promise<CommandSpec<any>>;
}

/** Every command the CLI offers, in the order `--help` lists them. */
export const commands: readonly CommandEntry[] = [
  { command: 'build [context]', describe: 'Build an image from a Dockerfile', splitArgs: markStdinContext, load: async () => (await import('./build.js')).buildCommand },
  { command: 'compose <action> [service..]', describe: 'Compose projects: config prints the resolved project, build builds its services, push pushes their images', load: async () => (await import('./compose.js')).composeCommand },
  { command: 'parse <file>', describe: 'Parse a Dockerfile and print its syntax tree (FILE "-" reads stdin)', load: async () => (await import('./parse.js')).parseCommand },
  { command: 'import <file> <name>', describe: 'Create an image from a root filesystem tarball (plain or gzip), like docker import', load: async () => (await import('./import.js')).importCommand },
  { command: 'load', describe: 'Load images from an OCI or docker archive (as written by save, docker save, podman save, skopeo)', load: async () => (await import('./load.js')).loadCommand },
  { command: 'save <images..>', describe: 'Save images to an OCI or docker archive (docker save)', load: async () => (await import('./save.js')).saveCommand },
  { command: 'images', describe: 'List the images of the local store', load: async () => (await import('./images.js')).imagesCommand },
  { command: 'history <image>', describe: 'Show the history of an image: one row per build step, newest first', load: async () => (await import('./history.js')).historyCommand },
  { command: 'inspect <images..>', describe: 'Show the details of images as a JSON array, like docker image inspect', load: async () => (await import('./inspect.js')).inspectCommand },
  { command: 'rmi <images..>', describe: 'Remove images: untag, and delete what no other image or the build cache needs', load: async () => (await import('./rmi.js')).rmiCommand },
  { command: 'prune', describe: 'Remove dangling images; with --all also the build cache and its snapshots', load: async () => (await import('./prune.js')).pruneCommand },
  { command: 'df', describe: 'Show the disk usage of the store: images, build cache, snapshots, cache mounts', load: async () => (await import('./df.js')).dfCommand },
  { command: 'run <image> [command..]', describe: "Run an image's command in the build sandbox on a throwaway overlay (no daemon, no detach)", splitArgs: splitRunArgs, load: async () => (await import('./run.js')).runCommand },
  { command: 'pull <image>', describe: 'Pull an image from a registry into the local store', load: async () => (await import('./pull.js')).pullCommand },
  { command: 'push <image> [destination]', describe: 'Push an image from the local store to a registry; prints the manifest digest', load: async () => (await import('./push.js')).pushCommand },
  { command: 'manifest <action> [args..]', describe: 'Multi-platform images: create TARGET SRC... joins images (local or in a registry) into one index; push TARGET [DEST]; inspect REF', load: async () => (await import('./manifest.js')).manifestCommand },
  { command: 'tag <source> <target>', describe: 'Give an image of the local store another name (no registry involved)', load: async () => (await import('./tag.js')).tagCommand },
  { command: 'login <registry>', describe: 'Log in to a registry: check the credentials and store them in the docker config', load: async () => (await import('./login.js')).loginCommand },
  { command: 'logout <registry>', describe: 'Remove stored credentials for a registry', load: async () => (await import('./logout.js')).logoutCommand },
  { command: 'fsck', describe: 'Check the local store: every blob re-hashed, every tag and reference resolvable', load: async () => (await import('./fsck.js')).fsckCommand },
];

/** docker's management-command spellings (`tsbuild image ls`, `tsbuild system df`): alias -> command name. */
export const commandGroups: ReadonlyArray<{ readonly name: string; readonly describe: string; readonly commands: ReadonlyArray<readonly [alias: string, name: string]> }> = [
  {
    name: 'image',
    describe: 'Manage images (image ls, inspect, history, rm, prune, tag, pull, push, save, load, import)',
    commands: [
      ['ls', 'images'],
      ['inspect', 'inspect'],
      ['history', 'history'],
      ['rm', 'rmi'],
      ['prune', 'prune'],
      ['tag', 'tag'],
      ['pull', 'pull'],
      ['push', 'push'],
      ['save', 'save'],
      ['load', 'load'],
      ['import', 'import'],
    ],
  },
  { name: 'system', describe: 'Store-wide information and cleanup (system df, prune)', commands: [['df', 'df'], ['prune', 'prune']] },
];

/** Stands for a lone `-` context, which yargs would otherwise drop. */
export const STDIN_CONTEXT = '\0stdin-context';
const BUILD_BOOLEAN_FLAGS = new Set(['-q', '--quiet', '--no-cache', '--push', '--check', '-h', '--help']);

/**
 * `tsbuild build -` (a tar on stdin, as buildx): yargs drops a lone `-` positional, so it is
 * marked here; a `-` that is the value of the option before it (`-f -`) stays as it is.
 */
export function markStdinContext(words: readonly string[]): string[] {
  return words.map((w, i) => {
    if (w !== '-') return w;
    const prev = i > 0 ? words[i - 1]! : '';
    const takesValue = prev.startsWith('-') && prev !== '-' && !prev.includes('=') && !BUILD_BOOLEAN_FLAGS.has(prev) && prev !== '--';
    return takesValue ? w : STDIN_CONTEXT;
  });
}
