/**
 * registry/: the OCI distribution client (undici), auth and credentials, pull and push.
 * Front door (STYLE.md 2): other folders import from here only. Only registry/ imports undici.
 */
export {
  RegistryClient,
  type BlobSource,
  type FetchedManifest,
  type RegistryClientOptions,
  type Repository,
  type UploadOptions,
  type UploadResult,
} from './client.js';
export { RegistryError, isTemporary, parseErrorBody, parseRetryAfter, responseError } from './errors.js';
export { DEFAULT_RETRY_POLICY, retryDelayMs, withRetries, type RetryPolicy } from './retry.js';
export { parseChallenges, type Challenge } from './challenge.js';
export {
  DOCKER_HUB_AUTH_KEY,
  authFileCredentials,
  authFilesFromEnv,
  dockerConfigPath,
  removeCredential,
  runCredentialHelper,
  saveCredential,
  staticCredentials,
  type Credential,
  type CredentialSource,
  type HelperRunner,
} from './credentials.js';
export { pullImage, resolveBaseImage, type PullOptions, type PullPolicy, type PullProgress, type PulledImage } from './pull.js';
export { pushImage, type PushOptions, type PushProgress, type PushedImage } from './push.js';
export {
  readLayerVariants,
  readRepoDigests,
  recordLayerVariant,
  recordRepoDigest,
  storeUncompressedLayer,
  writeStoreManifest,
  type LayerVariant,
} from './store-layers.js';
export { registryClientFromEnvironment, type RegistryEnvironment } from './client-from-environment.js';
