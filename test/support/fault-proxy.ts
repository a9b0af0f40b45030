import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';

/**
 * A fault-injecting HTTP proxy in front of a real registry (a test tool, not a fake registry:
 * every answer that is not an injected fault comes from the registry).
 *
 * Faults, drawn from a seeded schedule so a failing seed can be replayed:
 *   500, 503        an error response (OCI error body) instead of forwarding
 *   429             Too Many Requests with Retry-After: 1
 *   reset           the connection is destroyed without a response
 *   truncate        the registry's response, cut off halfway through the body
 *   corrupt         the registry's response with one body byte changed (same length)
 *   slow            the registry's response in small pieces with pauses
 *   stall           no answer at all until the client gives up (a timeout)
 *   stall-body      the registry's status and headers and the first half of the body, then
 *                   nothing more on an open connection until the client gives up
 *   drip            the registry's response one byte at a time, DRIP_INTERVAL_MS apart: never
 *                   idle long enough for an idle timeout, far too slow to ever finish a blob
 *   redirect        blob GETs answered with 307 to another host (a second listener on
 *                   127.0.0.2) that serves the blob and refuses requests carrying Authorization,
 *                   as S3 presigned URLs do
 * Rules add fixed answers (403 for a path, an oversized manifest, ...), optionally only for
 * requests a predicate picks (the third PATCH, a body over a size cap).
 * The stats log every request (method, path, status, Content-Range), count the client's
 * connections, and keep the most blob transfers (blob GETs, upload PATCH/PUTs) in flight at once.
 */
export type FaultKind = '500' | '503' | '429' | 'reset' | 'stall' | 'stall-body' | 'drip' | 'truncate' | 'corrupt' | 'slow' | 'redirect';

/** The pause between two bytes of a 'drip' response. */
export const DRIP_INTERVAL_MS = 50;

export interface FaultRule {
  readonly method?: string;
  readonly path: RegExp;
  /** Only requests this returns true for (called once per request matching method and path). */
  readonly when?: (req: http.IncomingMessage) => boolean;
  /** A fixed response. */
  readonly respond?: { readonly status: number; readonly headers?: Record<string, string>; readonly body?: Buffer | string };
  /** Always this fault for matching requests. */
  readonly fault?: FaultKind;
  /** With fault 'corrupt': the offset in the body of the byte changed (default: the middle of the first chunk). */
  readonly corruptOffset?: number;
  /** Hold the request this long before answering or forwarding it (a slow answer, with or without another rule's effect). */
  readonly delayMs?: number;
}

export interface FaultProxyOptions {
  /** The registry origin, e.g. http://127.0.0.1:5000 or https://... (certificate not checked). */
  readonly upstream: string;
  readonly seed?: number;
  /** Probability of a fault per request (0..1). */
  readonly rate?: number;
  readonly faults?: readonly FaultKind[];
  readonly rules?: readonly FaultRule[];
  /** Authorization the blob-storage host uses to read from the registry (Basic for TLS tests). */
  readonly upstreamAuthorization?: string;
}

export interface ProxyLogEntry {
  readonly method: string;
  /** Path and query as the client sent them. */
  readonly path: string;
  /** The status sent back (0: the connection was cut without a response). */
  status: number;
  readonly contentRange: string | undefined;
  readonly contentLength: string | undefined;
  /** How many requests had arrived (the log's length) when this one was answered: which came in before its answer went out. */
  answeredAt: number;
}

export interface FaultProxy {
  /** host:port of the proxy, to use as the registry name. */
  readonly host: string;
  readonly stats: {
    requests: number;
    faults: Record<string, number>;
    authorizationLeaks: number;
    redirectsServed: number;
    /** TCP connections the client opened to the proxy. */
    connections: number;
    /** Blob GETs and upload PATCH/PUTs in flight now, and the most there ever were at once. */
    inflight: number;
    maxInflight: number;
    readonly log: ProxyLogEntry[];
  };
  setFaults(rate: number, faults: readonly FaultKind[], seed?: number): void;
  setRules(rules: readonly FaultRule[]): void;
  stop(): Promise<void>;
}

/** mulberry32: a small seeded PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const upstream = new URL(opts.upstream);
  const mod = upstream.protocol === 'https:' ? https : http;
  const agent = new mod.Agent({ keepAlive: true, ...(upstream.protocol === 'https:' ? { rejectUnauthorized: false } : {}) });
  let random = prng(opts.seed ?? 1);
  let rate = opts.rate ?? 0;
  let faults: readonly FaultKind[] = opts.faults ?? [];
  let rules: readonly FaultRule[] = opts.rules ?? [];
  const stats: FaultProxy['stats'] = { requests: 0, faults: {}, authorizationLeaks: 0, redirectsServed: 0, connections: 0, inflight: 0, maxInflight: 0, log: [] };

  const errorBody = (code: string, message: string): string => JSON.stringify({ errors: [{ code, message }] });

  /** Forward req to the registry; `shape` may alter how the response goes back. */
  const forward = (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    shape: 'none' | 'truncate' | 'corrupt' | 'slow' | 'stall-body' | 'drip',
    headers: http.OutgoingHttpHeaders = req.headers,
    path = req.url ?? '/',
    corruptOffset?: number,
  ): void => {
    const up = mod.request(
      { protocol: upstream.protocol, hostname: upstream.hostname, port: upstream.port, method: req.method, path, headers, agent },
      (ur) => {
        const h = { ...ur.headers };
        // Absolute Location headers from the registry name the upstream: point them at us.
        if (typeof h.location === 'string' && h.location.startsWith(upstream.origin)) h.location = h.location.slice(upstream.origin.length);
        res.writeHead(ur.statusCode ?? 502, h);
        if (shape === 'none') {
          ur.pipe(res);
          return;
        }
        const len = Number(ur.headers['content-length'] ?? '0');
        let sent = 0;
        let flipped = false;
        ur.on('data', (chunk: Buffer) => {
          if (shape === 'truncate') {
            const room = Math.floor(len / 2) - sent;
            if (room <= 0) return;
            const piece = chunk.subarray(0, room);
            sent += piece.byteLength;
            res.write(piece);
            if (sent >= Math.floor(len / 2)) {
              ur.destroy();
              res.socket?.destroy();
            }
            return;
          }
          if (shape === 'corrupt' && !flipped && chunk.byteLength > 0) {
            const at = corruptOffset === undefined ? Math.floor(chunk.byteLength / 2) : corruptOffset - sent;
            sent += chunk.byteLength;
            if (at >= chunk.byteLength) {
              res.write(chunk);
              return;
            }
            const c = Buffer.from(chunk);
            c[at] = (c[at] ?? 0) ^ 0xff;
            flipped = true;
            res.write(c);
            return;
          }
          if (shape === 'stall-body') {
            // Half the body, then silence: the connection stays open and nothing else comes.
            const room = Math.floor(len / 2) - sent;
            if (room > 0) res.write(chunk.subarray(0, room));
            sent += chunk.byteLength;
            if (sent >= Math.floor(len / 2)) ur.pause();
            return;
          }
          if (shape === 'drip') {
            ur.pause();
            let off = 0;
            const step = (): void => {
              if (res.destroyed) return;
              if (off >= chunk.byteLength) {
                ur.resume();
                return;
              }
              res.write(chunk.subarray(off, off + 1));
              off += 1;
              setTimeout(step, DRIP_INTERVAL_MS);
            };
            step();
            return;
          }
          if (shape === 'slow') {
            ur.pause();
            let off = 0;
            const step = (): void => {
              if (off >= chunk.byteLength) {
                ur.resume();
                return;
              }
              res.write(chunk.subarray(off, off + 16 * 1024));
              off += 16 * 1024;
              setTimeout(step, 2);
            };
            step();
            return;
          }
          res.write(chunk);
        });
        // A drip resumes the upstream only once a chunk's last byte went out, so 'end' comes
        // after the whole body; a stalled body never ends.
        ur.on('end', () => {
          if (shape !== 'stall-body') res.end();
        });
        ur.on('error', () => res.socket?.destroy());
        if (shape === 'truncate' && len < 2) {
          // Nothing to cut: break the connection instead.
          res.socket?.destroy();
        }
      },
    );
    up.on('error', () => res.socket?.destroy());
    req.pipe(up);
  };

  // The "other host": blob storage that refuses a second auth mechanism.
  const storage = http.createServer((req, res) => {
    stats.redirectsServed++;
    if (req.headers.authorization !== undefined) {
      stats.authorizationLeaks++;
      res.writeHead(400, { 'content-type': 'application/json' });
      res.end(errorBody('UNSUPPORTED', 'Only one auth mechanism allowed'));
      return;
    }
    const target = new URL(req.url ?? '/', 'http://x').searchParams.get('path') ?? '/';
    const headers: http.OutgoingHttpHeaders = { ...req.headers, host: upstream.host };
    if (opts.upstreamAuthorization !== undefined) headers['authorization'] = opts.upstreamAuthorization;
    forward(req, res, 'none', headers, target);
  });
  await new Promise<void>((r) => storage.listen(0, '127.0.0.2', r));
  const storagePort = (storage.address() as AddressInfo).port;

  const server = http.createServer((req, res) => {
    stats.requests++;
    const path = req.url ?? '/';
    const entry: ProxyLogEntry = { method: req.method ?? '', path, status: 0, contentRange: req.headers['content-range'], contentLength: req.headers['content-length'], answeredAt: -1 };
    stats.log.push(entry);
    res.on('finish', () => {
      entry.status = res.statusCode;
      entry.answeredAt = stats.log.length;
    });
    const transfer = (req.method === 'GET' && /\/blobs\/sha256:/.test(path)) || ((req.method === 'PATCH' || req.method === 'PUT') && /\/blobs\/uploads\//.test(path));
    if (transfer) {
      stats.inflight++;
      stats.maxInflight = Math.max(stats.maxInflight, stats.inflight);
      let done = false;
      const end = (): void => {
        if (!done) stats.inflight--;
        done = true;
      };
      res.once('finish', end);
      res.once('close', end);
    }
    const rule = rules.find((r) => (r.method === undefined || r.method === req.method) && r.path.test(path) && (r.when === undefined || r.when(req)));
    if (rule?.delayMs !== undefined) setTimeout(() => handle(req, res, path, rule), rule.delayMs);
    else handle(req, res, path, rule);
  });

  const handle = (req: http.IncomingMessage, res: http.ServerResponse, path: string, rule: FaultRule | undefined): void => {
    let fault: FaultKind | undefined = rule?.fault;
    if (rule?.respond !== undefined) {
      req.resume();
      res.writeHead(rule.respond.status, rule.respond.headers ?? {});
      res.end(rule.respond.body ?? '');
      return;
    }
    const isBlobGet = req.method === 'GET' && /\/blobs\/sha256:/.test(path);
    const isPing = path === '/v2/' || path === '/v2';
    if (fault === undefined && !isPing && faults.length > 0 && random() < rate) {
      fault = faults[Math.floor(random() * faults.length)];
      if (fault === 'redirect' && !isBlobGet) fault = undefined;
    }
    if (fault !== undefined) stats.faults[fault] = (stats.faults[fault] ?? 0) + 1;
    switch (fault) {
      case '500':
      case '503':
        req.resume();
        res.writeHead(Number(fault), { 'content-type': 'application/json' });
        res.end(errorBody('UNKNOWN', 'injected failure'));
        return;
      case '429':
        req.resume();
        res.writeHead(429, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(errorBody('TOOMANYREQUESTS', 'injected rate limit'));
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'stall':
        req.resume();
        return;
      case 'redirect':
        req.resume();
        res.writeHead(307, { location: `http://127.0.0.2:${storagePort}/blob?path=${encodeURIComponent(path)}` });
        res.end();
        return;
      case 'truncate':
      case 'corrupt':
      case 'slow':
      case 'stall-body':
      case 'drip':
        forward(req, res, fault, { ...req.headers }, path, rule?.corruptOffset);
        return;
      case undefined:
        forward(req, res, 'none', { ...req.headers });
        return;
    }
  };
  server.on('connection', () => stats.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;

  return {
    host: `127.0.0.1:${port}`,
    stats,
    setFaults(r, f, seed) {
      rate = r;
      faults = f;
      if (seed !== undefined) random = prng(seed);
    },
    setRules(r) {
      rules = r;
    },
    async stop() {
      server.closeAllConnections();
      storage.closeAllConnections();
      agent.destroy();
      await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => storage.close(r))]);
    },
  };
}
