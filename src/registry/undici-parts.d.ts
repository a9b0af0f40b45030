/**
 * Types of the three undici files registry/undici-agent.ts loads instead of undici's index (which
 * also loads fetch, WebSocket, the cache and the mock agent). The classes are undici's own.
 */
declare module 'undici/lib/dispatcher/agent.js' {
  import type { Agent } from 'undici';
  const AgentClass: typeof Agent;
  export default AgentClass;
}
declare module 'undici/lib/dispatcher/dispatcher.js' {
  import type { Dispatcher } from 'undici';
  const DispatcherClass: typeof Dispatcher;
  export default DispatcherClass;
}
declare module 'undici/lib/api/index.js' {
  const api: Record<string, unknown>;
  export default api;
}
declare module 'undici/lib/handler/decorator-handler.js' {
  import type { DecoratorHandler } from 'undici';
  const DecoratorHandlerClass: typeof DecoratorHandler;
  export default DecoratorHandlerClass;
}
declare module 'undici/lib/core/errors.js' {
  import type { errors } from 'undici';
  const undiciErrors: typeof errors;
  export default undiciErrors;
}
declare module 'undici/lib/core/connect.js' {
  import type { buildConnector } from 'undici';
  const build: typeof buildConnector;
  export default build;
}
