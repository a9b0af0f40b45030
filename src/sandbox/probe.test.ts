import { describe, expect, it } from 'vitest';
import { describeCapabilities, parseSubordinateIds, probeSandbox, userNamespaceArgs } from './probe.js';

describe('parseSubordinateIds', () => {
  const text = 'alice:100000:65536\n# comment\n1002:300000:1000\nbob:200000:65536\nalice:900000:10\nbroken:line\n';
  it.each([
    ['alice', 1001, { start: 100000, count: 65536 }],
    ['bob', 1003, { start: 200000, count: 65536 }],
    ['carol', 1002, { start: 300000, count: 1000 }],
    ['dave', 1004, undefined],
  ] as const)('%s (uid %d)', (user, uid, want) => {
    expect(parseSubordinateIds(text, user, uid)).toEqual(want);
  });
});

describe('probeSandbox on this host (root)', () => {
  it('finds every component and caches per process', async () => {
    const a = probeSandbox();
    const b = probeSandbox();
    expect(a).toBe(b);
    const c = await a;
    expect(c.isRoot).toBe(true);
    // A missing component fails loudly here (CI installs everything: scripts/setup + attr).
    for (const [name, cap] of Object.entries({ bwrap: c.bwrap, runc: c.runc, userNamespaces: c.userNamespaces, overlay: c.overlay, getfattr: c.xattrReader })) {
      expect({ name, ...cap }).toEqual({ name, ok: true });
    }
    expect(c.idMapping.kind).toBe('identity');
    expect(describeCapabilities(c)).toContain('bwrap: ok');
  });

  it('builds unshare arguments from a mapping', () => {
    expect(userNamespaceArgs({ kind: 'identity', uids: [], gids: [] })).toEqual([]);
    expect(
      userNamespaceArgs({
        kind: 'subordinate',
        uids: [{ containerId: 0, hostId: 1001, size: 1 }, { containerId: 1, hostId: 100000, size: 65536 }],
        gids: [{ containerId: 0, hostId: 1001, size: 1 }, { containerId: 1, hostId: 100000, size: 65536 }],
      }),
    ).toEqual(['--user', '--map-root-user', '--map-users=100000,1,65536', '--map-groups=100000,1,65536']);
  });
});
