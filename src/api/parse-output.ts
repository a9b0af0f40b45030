import path from 'node:path';
import { TsbuildError } from '../errors.js';
import type { Compression, OutputSpec } from '../engine/index.js';
import { normalizeName } from '../image/index.js';

const COMPRESSIONS: readonly Compression[] = ['gzip', 'zstd', 'uncompressed'];

/**
 * Parses one `--output` value as buildx does: `type=oci,dest=out.tar` in CSV form, or a bare
 * path as the shorthand for `type=local,dest=PATH` (buildx: "-o DIR"). `type=registry[,name=REF]`
 * and `type=image,name=REF,push=true` push without keeping the image in the local store (one
 * name per output: this CSV has no quoting for buildx's `"name=a,b"`).
 * https://github.com/docker/buildx/blob/master/docs/reference/buildx_build.md#output
 */
export function parseOutputFlag(value: string, cwd: string): OutputSpec {
  if (!value.includes('=')) {
    return { type: 'local', dest: path.resolve(cwd, value) };
  }
  const fields = new Map<string, string>();
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw usage(`invalid --output field ${JSON.stringify(part)} in ${JSON.stringify(value)}`);
    fields.set(part.slice(0, eq).trim().toLowerCase(), part.slice(eq + 1).trim());
  }
  const type = fields.get('type');
  const dest = fields.get('dest');
  const compression = (fields.get('compression') ?? 'gzip') as Compression;
  if (!COMPRESSIONS.includes(compression)) {
    throw usage(`unknown compression ${JSON.stringify(compression)}; use one of ${COMPRESSIONS.join(', ')}`);
  }
  // buildx's compression-level: gzip 0..9, zstd 0..22; 0 there means the default, as here.
  const levelText = fields.get('compression-level');
  let level: number | undefined;
  if (levelText !== undefined) {
    const max = compression === 'zstd' ? 22 : 9;
    if (!/^\d+$/.test(levelText) || Number(levelText) > max || compression === 'uncompressed') {
      throw usage(compression === 'uncompressed' ? 'compression-level needs compression=gzip or compression=zstd' : `compression-level ${JSON.stringify(levelText)} is not in 0..${max} for ${compression}`);
    }
    if (Number(levelText) > 0) level = Number(levelText);
  }
  const compressed = { compression, ...(level !== undefined ? { level } : {}) };
  const needDest = (): string => {
    if (!dest) throw usage(`--output type=${type} needs dest=PATH`);
    return path.resolve(cwd, dest);
  };
  const push = fields.get('push');
  if (push !== undefined && push !== 'true' && push !== 'false') throw usage(`push must be true or false, not ${JSON.stringify(push)}`);
  const nameText = fields.get('name');
  const name = (): { name?: string } => {
    if (nameText === undefined || nameText === '') return {};
    try {
      return { name: normalizeName(nameText) };
    } catch (e) {
      throw usage(`--output type=${type}: name ${JSON.stringify(nameText)} is not a valid image reference: ${(e as Error).message}`);
    }
  };
  switch (type) {
    case 'image':
    case 'store':
      // buildx: type=image,push=true is type=registry (pushed, not kept in the local store).
      if (type === 'image' && push === 'true') return { type: 'registry', ...name(), ...compressed };
      if (nameText !== undefined) throw usage(`--output type=${type} takes no name=; the image goes into the local store under the -t tags (add push=true to push it to NAME)`);
      return { type: 'image' };
    case 'registry':
      if (push === 'false') throw usage('--output type=registry always pushes; use type=image for the local store');
      return { type: 'registry', ...name(), ...compressed };
    case 'oci':
      return { type: 'oci', dest: needDest(), ...compressed };
    case 'oci-layout':
      return { type: 'oci-layout', dest: needDest(), ...compressed };
    case 'docker':
      // docker load reads gzip or plain layers only; its manifest has no zstd media type.
      if (compression === 'zstd') throw usage('--output type=docker cannot hold zstd layers (docker archives have no zstd media type); use type=oci,compression=zstd');
      return { type: 'docker', dest: needDest(), compression };
    case 'local': {
      // Off by default: the image's device nodes and setuid files are not created on the host.
      const preserve = fields.get('preserve-special');
      if (preserve !== undefined && preserve !== 'true' && preserve !== 'false') throw usage(`preserve-special must be true or false, not ${JSON.stringify(preserve)}`);
      return { type: 'local', dest: needDest(), ...(preserve === 'true' ? { preserveSpecial: true } : {}) };
    }
    case 'tar':
      return { type: 'tar', dest: needDest() };
    case undefined:
      throw usage(`--output ${JSON.stringify(value)} has no type=`);
    default:
      throw usage(`unknown output type ${JSON.stringify(type)}; use image, registry, oci, oci-layout, docker, local or tar`);
  }
}

function usage(message: string): TsbuildError {
  return new TsbuildError('USAGE', message);
}
