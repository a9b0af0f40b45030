import crypto from 'node:crypto';
import zlib from 'node:zlib';

// A minimal tar writer with control over every header field (scripts/torture.mjs has the same),
// and an OCI image layout archive around crafted layers, for hostile-input tests.

export interface RawEntry {
  name: string;
  type?: string;
  body?: string | Buffer;
  mode?: number;
  linkname?: string;
  pax?: Record<string, string>;
  devmajor?: number;
  devminor?: number;
  declared?: number;
}

const octal = (n: number, len: number): string => n.toString(8).padStart(len - 1, '0') + '\0';

function header(e: RawEntry, size: number): Buffer {
  const h = Buffer.alloc(512);
  Buffer.from(e.name).copy(h, 0, 0, 100);
  h.write(octal(e.mode ?? 0o644, 8), 100);
  h.write(octal(0, 8), 108);
  h.write(octal(0, 8), 116);
  h.write(octal(size, 12), 124);
  h.write(octal(0, 12), 136);
  h.write('        ', 148);
  h.write(e.type ?? '0', 156);
  Buffer.from(e.linkname ?? '').copy(h, 157);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.write(octal(e.devmajor ?? 0, 8), 329);
  h.write(octal(e.devminor ?? 0, 8), 337);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(octal(sum, 7) + ' ', 148);
  return h;
}
const pad = (len: number): Buffer => Buffer.alloc((512 - (len % 512)) % 512);

function pax(rec: Record<string, string>): Buffer {
  let body = '';
  for (const [k, v] of Object.entries(rec)) {
    const tail = ` ${k}=${v}\n`;
    let n = tail.length + 1;
    while (String(n).length + tail.length !== n) n = String(n).length + tail.length;
    body += n + tail;
  }
  return Buffer.from(body);
}

export function makeTar(entries: readonly RawEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (e.pax) {
      const b = pax(e.pax);
      parts.push(header({ name: 'PaxHeaders/x', type: 'x' }, b.length), b, pad(b.length));
    }
    const body = e.body === undefined ? Buffer.alloc(0) : Buffer.from(e.body);
    parts.push(header(e, e.declared ?? body.length), body, pad(body.length));
  }
  parts.push(Buffer.alloc(1024));
  return Buffer.concat(parts);
}

const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

/** An OCI image layout tar holding one image `name:tag` whose layers are the given tars. */
export function ociArchive(layers: readonly Buffer[], ref: string): Buffer {
  const blobs = new Map<string, Buffer>();
  const descs = layers.map((tar) => {
    const gz = zlib.gzipSync(tar);
    blobs.set(sha(gz), gz);
    return { mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${sha(gz)}`, size: gz.length };
  });
  const arch = ({ x64: 'amd64', arm64: 'arm64' } as Record<string, string>)[process.arch] ?? process.arch;
  const config = Buffer.from(JSON.stringify({ architecture: arch, os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: layers.map((t) => `sha256:${sha(t)}`) } }));
  blobs.set(sha(config), config);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json', config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: `sha256:${sha(config)}`, size: config.length }, layers: descs }));
  blobs.set(sha(manifest), manifest);
  const index = Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: `sha256:${sha(manifest)}`, size: manifest.length, annotations: { 'io.containerd.image.name': `docker.io/library/${ref}`, 'org.opencontainers.image.ref.name': ref.split(':')[1] ?? 'latest' } }] }));
  const entries: RawEntry[] = [
    { name: 'oci-layout', body: '{"imageLayoutVersion":"1.0.0"}' },
    { name: 'index.json', body: index },
    { name: 'blobs/', type: '5', mode: 0o755 },
    { name: 'blobs/sha256/', type: '5', mode: 0o755 },
  ];
  for (const [d, b] of blobs) entries.push({ name: `blobs/sha256/${d}`, body: b });
  return makeTar(entries);
}

/** The entries of a plain ustar archive (no PAX), in order: enough to take a saved image apart. */
export function readTar(tar: Buffer): RawEntry[] {
  const out: RawEntry[] = [];
  for (let off = 0; off + 512 <= tar.length; ) {
    const h = tar.subarray(off, off + 512);
    if (h.every((b) => b === 0)) break;
    const str = (a: number, b: number): string => h.subarray(a, b).toString('latin1').replace(/\0.*$/s, '');
    const prefix = str(345, 500);
    const name = (prefix ? `${prefix}/` : '') + str(0, 100);
    const size = parseInt(str(124, 136).trim() || '0', 8);
    const type = str(156, 157) || '0';
    out.push({ name, type, mode: parseInt(str(100, 108).trim() || '644', 8), body: Buffer.from(tar.subarray(off + 512, off + 512 + size)) });
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

export const sha256 = (b: Buffer): string => `sha256:${sha(b)}`;
