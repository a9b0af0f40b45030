/**
 * MALLOC_ARENA_MAX=2 for the CLI's own process, not for the processes it starts. glibc gives
 * each thread that allocates an arena of its own (up to 8 per core) and keeps what is freed in
 * it: node:zlib makes each deflate job's state (~270 KB) on libuv's threads when the job first
 * runs, so a push or an export that deflates hundreds of blocks kept several arenas of freed
 * state besides the main one. With two arenas, a push of a 950 MB layer (the side-by-side
 * bench's big-run) peaked at 87.5-90 instead of 93-94 MiB of RSS and its OCI export at 83-85.5
 * instead of 88-91.5 MiB, in the same time (three alternating runs each, 2 cores). The variable
 * must be in the environment when Node starts, so the installed command (cmd/tsbuild.sh) sets
 * it when the user has not, and marks that it did with TSBUILD_MALLOC_ARENA_MAX; this puts the
 * environment back as the user had it, for RUN's sandbox, git, zstd and the rest.
 */
export function dropLauncherMallocSetting(env: NodeJS.ProcessEnv): void {
  if (env['TSBUILD_MALLOC_ARENA_MAX'] === undefined) return;
  delete env['TSBUILD_MALLOC_ARENA_MAX'];
  delete env['MALLOC_ARENA_MAX'];
}
