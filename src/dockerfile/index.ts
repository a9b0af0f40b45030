/**
 * The Dockerfile front end: text -> syntax tree with line ranges -> typed instructions ->
 * stages, and BuildKit's parse dump. Pure: nothing here touches files, network or processes.
 */
export { parseDockerfile } from './parser.js';
export { closestMatch } from './suggest.js';
export type { Node, ParsedDockerfile, ParseOptions, Directives, EscapeToken, Heredoc } from './parser.js';
export { dumpDockerfile } from './dump.js';
export { directiveWarnings, parseCheckOptions } from './directives.js';
export { looksLikeSecretName } from './secret-names.js';
export type { CheckOptions } from './directives.js';
export { chompHeredocContent, parseHeredocWord } from './heredoc.js';
export type { HeredocMarker } from './heredoc.js';
export { toInstruction, toInstructions } from './instructions.js';
export type {
  Instruction,
  InstructionKind,
  CommandForm,
  FromInstruction,
  RunInstruction,
  CmdInstruction,
  EntrypointInstruction,
  ShellInstruction,
  EnvInstruction,
  LabelInstruction,
  KeyValuePair,
  ArgInstruction,
  ArgDefinition,
  CopyInstruction,
  AddInstruction,
  HeredocSource,
  WorkdirInstruction,
  UserInstruction,
  VolumeInstruction,
  ExposeInstruction,
  StopSignalInstruction,
  HealthcheckInstruction,
  HealthcheckTest,
  OnbuildInstruction,
  MaintainerInstruction,
} from './instructions.js';
export { splitStages } from './stages.js';
/** Go's strconv.Quote (`%q`): the one implementation, for messages and BuildKit's history text. */
export { goQuote } from './go-text.js';
export type { Stage, SplitStages } from './stages.js';
export * from './shell-lex.js';
export * from './checks/index.js';
