import { describe, expect, it } from 'vitest';
import { substituteNamedImages } from './compose.js';

describe('substituteNamedImages', () => {
  const images = new Map([
    ['base', 'docker.io/library/shop-base:latest'],
    ['tools', 'registry.example/tools:1'],
  ]);
  it.each([
    ['FROM base', 'FROM docker.io/library/shop-base:latest'],
    ['from --platform=$BUILDPLATFORM base AS build', 'from --platform=$BUILDPLATFORM docker.io/library/shop-base:latest AS build'],
    ['FROM basement', 'FROM basement'],
    ['COPY --from=tools /bin/x /x', 'COPY --from=registry.example/tools:1 /bin/x /x'],
    ['RUN --mount=type=bind,from=tools,target=/t ls /t', 'RUN --mount=type=bind,from=registry.example/tools:1,target=/t ls /t'],
    ['COPY --from=build /a /b', 'COPY --from=build /a /b'],
    ['RUN echo FROM base', 'RUN echo FROM base'],
    ['RUN --mount=from=tools,target=/t true', 'RUN --mount=from=registry.example/tools:1,target=/t true'],
    ['RUN echo copy from=tools', 'RUN echo copy from=tools'],
  ])('%s', (line, want) => {
    expect(substituteNamedImages(line, images)).toBe(want);
  });

  it('keeps the line count, so errors point at the user\'s lines', () => {
    const text = 'FROM base\n\nRUN true\nCOPY --from=tools /a /a\n';
    expect(substituteNamedImages(text, images).split('\n')).toHaveLength(text.split('\n').length);
  });
});
