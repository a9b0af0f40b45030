import { readdir } from 'node:fs/promises';

/**
 * File names are bytes; tsbuild's paths are strings. A name that is not valid UTF-8 cannot be
 * told apart from its lossy decoding (U+FFFD for each bad byte), which names no file, so node's
 * string readdir would make such a file silently vanish (its lstat fails with ENOENT).
 * DEBT(#19, names): BuildKit copies such files as they are; here they are found and reported, so
 * that a build refuses them loudly instead of producing an image without them.
 */
export interface DirectoryNames {
  /** Names that are valid UTF-8, as strings. */
  readonly names: string[];
  /** Names that are not: their bytes, and the lossy decoding patterns are matched against. */
  readonly invalid: Array<{ readonly raw: Buffer; readonly lossy: string }>;
}

/** readdir that keeps the names that are not valid UTF-8 apart instead of altering them. */
export async function readDirectoryNames(dir: string): Promise<DirectoryNames> {
  const raw = await readdir(dir, { encoding: 'buffer' });
  const names: string[] = [];
  const invalid: Array<{ raw: Buffer; lossy: string }> = [];
  for (const r of raw) {
    const s = r.toString('utf8');
    // Decoding bad bytes always yields U+FFFD, so a name without one is valid as it is; only a
    // name holding one (rare, and possibly valid) is encoded again and compared.
    if (!s.includes('\uFFFD') || Buffer.from(s, 'utf8').equals(r)) names.push(s);
    else invalid.push({ raw: r, lossy: s });
  }
  return { names, invalid };
}

/** A name's bytes for messages: printable ASCII as it is, every other byte as \xNN. */
export function printableName(raw: Uint8Array): string {
  let out = '';
  for (const b of raw) out += b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  return out;
}
