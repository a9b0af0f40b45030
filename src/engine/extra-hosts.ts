import fsp from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { TsbuildError } from '../errors.js';

/** One `--add-host` entry: RUN steps resolve `host` to `ip` through /etc/hosts. */
export interface ExtraHost {
  readonly host: string;
  readonly ip: string;
}

/**
 * Parses `--add-host NAME:IP` as the docker CLI and buildx take it (opts.ValidateExtraHost):
 * `NAME=IP` also, the first separator splits (so `NAME:::1` is an IPv6 address), an IPv6
 * address may be in brackets. The IP must be a literal address; docker's `host-gateway`
 * names the daemon's bridge, which a daemon-free build does not have.
 */
export function parseAddHost(spec: string): ExtraHost {
  const eq = spec.indexOf('=');
  const cut = eq >= 0 ? eq : spec.indexOf(':');
  const usage = (why: string) =>
    new TsbuildError('USAGE', `invalid --add-host ${JSON.stringify(spec)}: ${why}`, { hint: 'use --add-host NAME:IP, e.g. --add-host db.local:10.0.0.5 or --add-host v6.local=[fd00::5]' });
  if (cut < 0) throw usage('no ":" between the name and the address');
  const host = spec.slice(0, cut);
  let ip = spec.slice(cut + 1);
  if (ip.startsWith('[') && ip.endsWith(']')) ip = ip.slice(1, -1);
  if (host === '' || /[\s#]/.test(host)) throw usage('the name is empty or holds a space or "#"');
  if (ip === 'host-gateway') throw usage('host-gateway needs a container daemon\'s bridge, which tsbuild does not have');
  // node:net loads on use: it is not otherwise loaded by a build (start-up cost).
  const { isIP } = createRequire(import.meta.url)('node:net') as typeof import('node:net');
  if (isIP(ip) === 0) throw usage(`${JSON.stringify(ip)} is not an IP address`);
  return { host, ip };
}

/**
 * Writes the /etc/hosts RUN steps see: the host's file (what they see without --add-host)
 * followed by one `IP<TAB>NAME` line per entry, in the order given, as BuildKit appends them.
 */
export async function writeHostsFile(hosts: readonly ExtraHost[], dir: string): Promise<string> {
  const base = await fsp.readFile('/etc/hosts', 'utf8').catch(() => '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n');
  const file = path.join(dir, 'hosts');
  await fsp.writeFile(file, `${base}${base.endsWith('\n') || base === '' ? '' : '\n'}${hosts.map((h) => `${h.ip}\t${h.host}\n`).join('')}`, { mode: 0o644 });
  return file;
}
