import { describe, expect, it } from 'vitest';
import type { ImageConfig } from '../oci/types.js';
import { addExposedPorts, exposedPortKeys, setEntrypoint, setCmd, setEnv, addVolumes, setStopSignal } from './config-edit.js';
import { TsbuildError } from '../errors.js';

const base: ImageConfig = { architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [] }, config: { Env: ['PATH=/bin', 'A=1'], Cmd: ['sh'] } };

describe('config edits', () => {
  it('ENV replaces in place and appends new names', () => {
    expect(setEnv(base, [['A', '2'], ['B', 'x=y']]).config?.Env).toEqual(['PATH=/bin', 'A=2', 'B=x=y']);
  });

  it.each([
    ['80', ['80/tcp']],
    ['53/UDP', ['53/udp']],
    ['8000-8002', ['8000/tcp', '8001/tcp', '8002/tcp']],
    ['7000-7001/udp', ['7000/udp', '7001/udp']],
  ])('EXPOSE %s', (spec, want) => {
    expect(exposedPortKeys(spec)).toEqual(want);
  });

  it.each(['abc', '80/xyz', '9-1', '70000'])('EXPOSE %s is an error', (spec) => {
    expect(() => exposedPortKeys(spec)).toThrow(TsbuildError);
  });

  it('EXPOSE accumulates', () => {
    const c = addExposedPorts(addExposedPorts(base, ['80']), ['443']);
    expect(Object.keys(c.config?.ExposedPorts ?? {})).toEqual(['80/tcp', '443/tcp']);
  });

  it('ENTRYPOINT clears an inherited CMD, not one set in the stage', () => {
    expect(setEntrypoint(base, ['/e'], false).config?.Cmd).toBeNull();
    expect(setEntrypoint(setCmd(base, ['x']), ['/e'], true).config?.Cmd).toEqual(['x']);
  });

  it('VOLUME refuses an empty path; STOPSIGNAL checks the name', () => {
    expect(() => addVolumes(base, [''])).toThrow(TsbuildError);
    expect(setStopSignal(base, 'SIGKILL').config?.StopSignal).toBe('SIGKILL');
    expect(() => setStopSignal(base, 'kill me')).toThrow(TsbuildError);
  });
});
