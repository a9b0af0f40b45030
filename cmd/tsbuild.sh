#!/bin/sh
# dist/cmd/tsbuild, the installed command (package.json's "bin"; scripts/bundle-cli.mjs copies
# this file there). It starts dist/cmd/tsbuild.cjs with Node, moving NODE_EXTRA_CA_CERTS aside
# first: Node 20 reads and parses the certificates that variable names at every start, before
# any JavaScript runs (about 0.04 s of CPU for a system bundle of 144 certificates, half of
# `node -e 0`), whether or not the command makes a TLS connection. The CLI puts the variable
# back for the processes it starts and reads the file when its first verified TLS connection
# needs it (src/host/extra-ca.ts). `node dist/cmd/tsbuild.cjs` works the same, with Node's cost.
if [ -n "${NODE_EXTRA_CA_CERTS-}" ] && [ -z "${TSBUILD_NODE_EXTRA_CA_CERTS+set}" ]; then
  TSBUILD_NODE_EXTRA_CA_CERTS=$NODE_EXTRA_CA_CERTS
  export TSBUILD_NODE_EXTRA_CA_CERTS
  unset NODE_EXTRA_CA_CERTS
fi
# Two malloc arenas instead of glibc's up to 8 per core: less freed memory kept (a push of a
# 950 MB layer peaked at 87.5-90 instead of 93-94 MiB of RSS). For Node alone: the CLI takes the
# variable out of its environment again when TSBUILD_MALLOC_ARENA_MAX says it was set here
# (src/host/malloc-arenas.ts). A value the user set is left as it is.
if [ -z "${MALLOC_ARENA_MAX+set}" ]; then
  MALLOC_ARENA_MAX=2 TSBUILD_MALLOC_ARENA_MAX=1
  export MALLOC_ARENA_MAX TSBUILD_MALLOC_ARENA_MAX
fi
# npm links this file from node_modules/.bin: the launcher sits next to the real file. (No
# dirname process, and readlink only for a link: each fork costs a few ms of a ~50 ms start.)
self=$0
[ -L "$self" ] && self=$(readlink -f "$self")
case $self in */*) ;; *) self=./$self ;; esac
exec node "${self%/*}/tsbuild.cjs" "$@"
