# tsbuild's own image: `npm run build && scripts/stage-image && tsbuild build -t tsbuild .`
# The base is Debian bookworm as scripts/make-debian-image makes it (debootstrap; no public
# base image is needed). bubblewrap isolates RUN steps where the container allows user
# namespaces; where it does not (Docker's default capabilities and seccomp profile), a root
# tsbuild steps down to chroot isolation with one warning.
FROM debian:bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends bubblewrap ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Node from the build machine (scripts/stage-image), and tsbuild as npm installed it.
COPY .image/node /usr/local/bin/node
COPY .image/app/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/tsbuild/dist/cmd/tsbuild.cjs /usr/local/bin/tsbuild \
 && tsbuild --version
ENV TSBUILD_ROOT=/var/lib/tsbuild
WORKDIR /workspace
ENTRYPOINT ["tsbuild"]
