import path from 'node:path';
import { readLocalImage, readLocalIndex } from '../../src/image/index.js';
import { OCI_IMAGE_INDEX, canonicalJson, parseReference, type Descriptor, type ImageIndex, type Platform } from '../../src/oci/index.js';
import { RegistryClient, pushImage, pushIndex } from '../../src/registry/index.js';
import { openStore } from '../../src/store/index.js';
import { repoRoot, tool } from './cli.js';

export const AMD64: Platform = { os: 'linux', architecture: 'amd64' };
export const ARM64: Platform = { os: 'linux', architecture: 'arm64' };

/**
 * A store with busybox for two platforms, made from Debian's busybox-static and
 * busybox-static:arm64 (scripts/make-busybox-image --platform): `busybox:latest` and
 * `busybox:amd64` (the host's), `busybox:arm64`, and `busybox:multi`, an OCI image index naming
 * both with their platforms. Resolves with the index descriptor.
 */
export async function storeWithMultiarchBusybox(root: string): Promise<Descriptor> {
  const make = path.join(repoRoot, 'scripts', 'make-busybox-image');
  const env = { TSBUILD_ROOT: root };
  await tool(make, ['busybox:latest'], { env });
  await tool(make, ['--platform', 'linux/amd64', 'busybox:amd64'], { env });
  await tool(make, ['--platform', 'linux/arm64', 'busybox:arm64'], { env });
  const store = await openStore(root);
  const manifests: Descriptor[] = [];
  for (const [name, platform] of [['docker.io/library/busybox:amd64', AMD64], ['docker.io/library/busybox:arm64', ARM64]] as const) {
    const tag = (await store.listTags()).find((t) => t.name === name);
    if (!tag) throw new Error(`make-busybox-image did not tag ${name}`);
    manifests.push({ ...tag.descriptor, platform });
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: OCI_IMAGE_INDEX, manifests };
  const info = await store.blobs.putBytes(canonicalJson(index));
  const desc: Descriptor = { mediaType: OCI_IMAGE_INDEX, digest: info.digest, size: info.size };
  await store.setTag('docker.io/library/busybox:multi', desc);
  return desc;
}

/**
 * Pushes the store's amd64 and arm64 busybox (storeWithMultiarchBusybox) to `registryHost` as
 * `REPO:amd64`, `REPO:arm64` and the two-platform index `REPO:multi`. Resolves with the index digest.
 */
export async function pushMultiarchBusybox(root: string, registryHost: string, repo = 'library/busybox'): Promise<string> {
  const store = await openStore(root);
  const client = new RegistryClient({ retry: { baseDelayMs: 20 } });
  try {
    for (const tag of ['amd64', 'arm64']) {
      const t = (await store.listTags()).find((x) => x.name === `docker.io/library/busybox:${tag}`);
      if (!t) throw new Error(`busybox:${tag} is not in ${root}`);
      await pushImage(client, store, await readLocalImage(store, t.descriptor), parseReference(`${registryHost}/${repo}:${tag}`));
    }
    const multi = (await store.listTags()).find((x) => x.name === 'docker.io/library/busybox:multi');
    if (!multi) throw new Error(`busybox:multi is not in ${root}`);
    const local = await readLocalIndex(store, multi.descriptor);
    return (await pushIndex(client, store, local, parseReference(`${registryHost}/${repo}:multi`))).digest;
  } finally {
    await client.close();
  }
}
