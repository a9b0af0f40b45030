/**
 * registry/: the OCI distribution client (undici), auth and credentials, pull and push.
 * Front door (STYLE.md 2): other folders import from here only. Only registry/ imports undici.
 *
 * Inside, by job: transport.ts (the HTTP exchange, auth, redirects, the retries), download.ts
 * (resumable, verified blob downloads), upload.ts (the upload session and the one mount path),
 * client.ts (the operations on top of them), pull.ts and push.ts (images), store-layers.ts (the
 * store records of registry facts, which cli/ reads from store-layers.ts itself: listing images
 * must not load undici).
 */
export { RegistryClient, type FetchedManifest, type ManifestUpload, type RegistryClientOptions } from './client.js';
export { fetchDispatcher, type Repository } from './transport.js';
export type { BlobDownload } from './download.js';
export type { BlobSource, BlobUpload, UploadResult } from './upload.js';
export { RegistryError } from './errors.js';
export type { RetryPolicy } from './retry.js';
export {
  authFileCredentials,
  authFilesFromEnv,
  dockerConfigPath,
  removeCredential,
  saveCredential,
  staticCredentials,
  type Credential,
  type CredentialSource,
} from './credentials.js';
export { fetchBlobBytes, pullAllPlatforms, pullImage, pullLayer, resolveBaseImage, type BaseImageOptions, type ImageLayers, type PullOptions, type PullPolicy, type PullProgress, type PulledImage, type PulledIndex } from './pull.js';
export { pushBlobBytes, pushImage, pushLayers, type PushOptions, type PushProgress, type PushedImage } from './push.js';
export { pushIndex, type PushedIndex } from './push-index.js';
export { putRemoteIndex, readRemoteEntries, type RemoteEntry } from './join-index.js';
export { registryClientFromEnvironment, type RegistryEnvironment } from './client-from-environment.js';
