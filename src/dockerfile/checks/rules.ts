/**
 * BuildKit's build checks, by their names: what `# check=skip=NAME` and `--check` use.
 * Names, descriptions, messages and URLs follow BuildKit's frontend/dockerfile/linter/ruleset.go
 * (the strings users grep for); the reference is https://docs.docker.com/reference/build-checks/.
 */

export const CHECK_NAMES = [
  'StageNameCasing',
  'FromAsCasing',
  'NoEmptyContinuation',
  'ConsistentInstructionCasing',
  'DuplicateStageName',
  'ReservedStageName',
  'JSONArgsRecommended',
  'MaintainerDeprecated',
  'UndefinedArgInFrom',
  'WorkdirRelativePath',
  'UndefinedVar',
  'MultipleInstructionsDisallowed',
  'LegacyKeyValueFormat',
  'InvalidBaseImagePlatform',
  'RedundantTargetPlatform',
  'SecretsUsedInArgOrEnv',
  'InvalidDefaultArgInFrom',
  'FromPlatformFlagConstDisallowed',
  'CopyIgnoredFile',
  'InvalidDefinitionDescription',
  'ExposeProtoCasing',
  'ExposeInvalidFormat',
] as const;

export type CheckName = (typeof CHECK_NAMES)[number];

export interface CheckRule {
  readonly name: CheckName;
  readonly description: string;
  readonly url: string;
  /** Experimental checks run only when `# check=experimental=NAME` (or `all`) turns them on. */
  readonly experimental: boolean;
}

const rule = (name: CheckName, slug: string, description: string, experimental = false): CheckRule => ({
  name,
  description,
  url: `https://docs.docker.com/go/dockerfile/rule/${slug}/`,
  experimental,
});

export const CHECK_RULES: Readonly<Record<CheckName, CheckRule>> = {
  StageNameCasing: rule('StageNameCasing', 'stage-name-casing', 'Stage names should be lowercase'),
  FromAsCasing: rule('FromAsCasing', 'from-as-casing', "The 'as' keyword should match the case of the 'from' keyword"),
  NoEmptyContinuation: rule('NoEmptyContinuation', 'no-empty-continuation', 'Empty continuation lines will become errors in a future release'),
  ConsistentInstructionCasing: rule('ConsistentInstructionCasing', 'consistent-instruction-casing', 'All commands within the Dockerfile should use the same casing (either upper or lower)'),
  DuplicateStageName: rule('DuplicateStageName', 'duplicate-stage-name', 'Stage names should be unique'),
  ReservedStageName: rule('ReservedStageName', 'reserved-stage-name', 'Reserved words should not be used as stage names'),
  JSONArgsRecommended: rule('JSONArgsRecommended', 'json-args-recommended', 'JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals'),
  MaintainerDeprecated: rule('MaintainerDeprecated', 'maintainer-deprecated', 'The MAINTAINER instruction is deprecated, use a label instead to define an image author'),
  UndefinedArgInFrom: rule('UndefinedArgInFrom', 'undefined-arg-in-from', 'FROM command must use declared ARGs'),
  WorkdirRelativePath: rule('WorkdirRelativePath', 'workdir-relative-path', 'Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes'),
  UndefinedVar: rule('UndefinedVar', 'undefined-var', 'Variables should be defined before their use'),
  MultipleInstructionsDisallowed: rule('MultipleInstructionsDisallowed', 'multiple-instructions-disallowed', 'Multiple instructions of the same type should not be used in the same stage'),
  LegacyKeyValueFormat: rule('LegacyKeyValueFormat', 'legacy-key-value-format', 'Legacy key/value format with whitespace separator should not be used'),
  InvalidBaseImagePlatform: rule('InvalidBaseImagePlatform', 'invalid-base-image-platform', 'Base image platform does not match expected target platform'),
  RedundantTargetPlatform: rule('RedundantTargetPlatform', 'redundant-target-platform', 'Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior'),
  SecretsUsedInArgOrEnv: rule('SecretsUsedInArgOrEnv', 'secrets-used-in-arg-or-env', 'Sensitive data should not be used in the ARG or ENV commands'),
  InvalidDefaultArgInFrom: rule('InvalidDefaultArgInFrom', 'invalid-default-arg-in-from', 'Default value for global ARG results in an empty or invalid base image name'),
  FromPlatformFlagConstDisallowed: rule('FromPlatformFlagConstDisallowed', 'from-platform-flag-const-disallowed', 'FROM --platform flag should not use a constant value'),
  CopyIgnoredFile: rule('CopyIgnoredFile', 'copy-ignored-file', 'Attempting to Copy file that is excluded by .dockerignore', true),
  InvalidDefinitionDescription: rule(
    'InvalidDefinitionDescription',
    'invalid-definition-description',
    'Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.',
    true,
  ),
  ExposeProtoCasing: rule('ExposeProtoCasing', 'expose-proto-casing', 'Protocol in EXPOSE instruction should be lowercase'),
  ExposeInvalidFormat: rule('ExposeInvalidFormat', 'expose-invalid-format', 'IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release'),
};

export function isCheckName(name: string): name is CheckName {
  return (CHECK_NAMES as readonly string[]).includes(name);
}
