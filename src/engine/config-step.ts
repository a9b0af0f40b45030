import { withLocation } from '../errors.js';
import {
  addExposedPorts,
  addHistory,
  addOnBuild,
  addVolumes,
  setCmd,
  setEntrypoint,
  setEnv,
  setHealthcheck,
  setLabels,
  setShell,
  setStopSignal,
  setUser,
} from '../image/index.js';
import type { ImageConfig } from '../oci/index.js';
import type { Step } from '../plan/index.js';
import type { StageState } from './stage-state.js';
import type { ConfigChange, StepContext, StepModule } from './step.js';

/** The instructions that edit the image config only. */
export type ConfigOnlyStep = Exclude<Step, { kind: 'COPY' | 'ADD' | 'RUN' | 'WORKDIR' }>;

/**
 * ENV, LABEL, ARG, USER, VOLUME, EXPOSE, STOPSIGNAL, CMD, ENTRYPOINT, SHELL, HEALTHCHECK,
 * ONBUILD, MAINTAINER: a config edit and a history entry (if the step has one), no layer. The
 * key is the parent's, the plan's key text and what the step can see.
 */
export const configStep: StepModule<ConfigOnlyStep> = {
  async prepare(step, ctx): Promise<ConfigChange> {
    const edit = editOf(step, ctx.state);
    return {
      kind: 'config',
      keyInputs: { parent: ctx.state.key, kind: step.kind, instruction: step.keyText, visible: step.visible, platform: ctx.platformText },
      apply: (state) => {
        let config = withLocation(step.location, () => edit(state.config));
        if (step.history !== undefined) config = addHistory(config, { createdBy: step.history, emptyLayer: true, created: ctx.inputs.created });
        return { ...state, config, ...(step.kind === 'CMD' ? { cmdSet: true } : {}) };
      },
    };
  },
};

function editOf(step: ConfigOnlyStep, state: StageState): (c: ImageConfig) => ImageConfig {
  switch (step.kind) {
    case 'ENV':
      return (c) => setEnv(c, step.pairs.map((p) => [p.key, p.value] as const));
    case 'LABEL':
      return (c) => setLabels(c, step.pairs.map((p) => [p.key, p.value] as const));
    case 'ARG':
      return (c) => c;
    case 'USER':
      return (c) => setUser(c, step.user);
    case 'VOLUME':
      return (c) => addVolumes(c, step.volumes);
    case 'EXPOSE':
      return (c) => addExposedPorts(c, step.ports);
    case 'STOPSIGNAL':
      return (c) => setStopSignal(c, step.signal);
    case 'CMD':
      return (c) => setCmd(c, step.cmd);
    case 'ENTRYPOINT':
      return (c) => setEntrypoint(c, step.entrypoint, state.cmdSet);
    case 'SHELL':
      return (c) => setShell(c, step.shell);
    case 'HEALTHCHECK': {
      // The config stores Go time.Duration values: nanoseconds (the parser gives ms).
      const ns = (ms: number) => Math.round(ms * 1e6);
      const hc = {
        Test: [...step.test],
        ...(step.interval !== undefined ? { Interval: ns(step.interval) } : {}),
        ...(step.timeout !== undefined ? { Timeout: ns(step.timeout) } : {}),
        ...(step.startPeriod !== undefined ? { StartPeriod: ns(step.startPeriod) } : {}),
        ...(step.startInterval !== undefined ? { StartInterval: ns(step.startInterval) } : {}),
        ...(step.retries !== undefined ? { Retries: step.retries } : {}),
      };
      return (c) => setHealthcheck(c, hc);
    }
    case 'ONBUILD':
      return (c) => addOnBuild(c, step.expression);
    case 'MAINTAINER':
      return (c) => ({ ...c, author: step.maintainer });
    default:
      return step satisfies never;
  }
}
