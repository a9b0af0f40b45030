import { describe, expect, it } from 'vitest';
import { TsbuildError } from '../errors.js';
import { extraHostsKey, parseAddHost } from './extra-hosts.js';

describe('parseAddHost (docker opts.ValidateExtraHost)', () => {
  it.each([
    ['db:10.0.0.5', { host: 'db', ip: '10.0.0.5' }],
    ['db=10.0.0.5', { host: 'db', ip: '10.0.0.5' }],
    ['v6:::1', { host: 'v6', ip: '::1' }], // the first ':' splits
    ['v6=[fd00::5]', { host: 'v6', ip: 'fd00::5' }],
    ['a.b-c:192.168.1.1', { host: 'a.b-c', ip: '192.168.1.1' }],
  ])('%s', (spec, want) => {
    expect(parseAddHost(spec)).toEqual(want);
  });

  it.each(['db', 'db:', ':1.2.3.4', 'db:1.2.3', 'db:host-gateway', 'a b:1.2.3.4', 'x#y:1.2.3.4'])('refuses %j with USAGE', (spec) => {
    try {
      parseAddHost(spec);
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(TsbuildError);
      expect((e as TsbuildError).code).toBe('USAGE');
    }
  });

  it('keys on every entry in order', () => {
    expect(extraHostsKey([{ host: 'a', ip: '1.1.1.1' }, { host: 'b', ip: '::1' }])).toBe('extra-hosts:a=1.1.1.1,b=::1');
  });
});
