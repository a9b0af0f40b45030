/**
 * host/: facts about this host's processes that several folders need and none owns: the owner
 * tag (pid, start time, host) of temp names, step dirs and locks, and whether that owner is
 * still alive. The store (temp names, locks, leases) and the sandbox (step dirs) both read it,
 * so it sits below both and imports nothing of the project. Also the extra CA certificates that
 * the launcher kept from Node's start (extra-ca.ts), and the scavenge that frees the dead buffers
 * of a blob stream early (scavenge.ts: layer/'s compressors, registry/'s downloads), and the
 * launcher's malloc setting that the CLI's children must not inherit (malloc-arenas.ts).
 */
export { currentOwner, ownerState, ownerTag, parseTempOwner, type ProcessOwner } from './process-owner.js';
export { adoptDeferredExtraCa, deferredExtraCaCertificates, hasDeferredExtraCa } from './extra-ca.js';
export { noteDeadBuffers } from './scavenge.js';
export { dropLauncherMallocSetting } from './malloc-arenas.js';
