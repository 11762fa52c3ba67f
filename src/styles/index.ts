// Public surface of the styles module.
export type { Language, LocalizedText, Style, StyleExample, StyleRegistry, GenerationOverrides } from './types.js';
export { builtinStyles, DEFAULT_QUESTION, DEFAULT_STYLE_ID } from './builtin.js';
export { loadStylesFile, parseStylesText, formatStylesIssue, type LoadedStyles, type StylesIssue } from './file.js';
export {
  LiveStyleRegistry,
  openStyleRegistry,
  builtinStyleRegistry,
  stylesFileFromEnv,
  STYLES_FILE_ENV,
  type ReloadResult,
  type StyleRegistryOptions,
} from './registry.js';
export { buildStyledRequest, type StyledRequest, type StyledTurnInput } from './conversation.js';
export { resolveAskRequest, type AskStyleFlags, type AskStyleInput, type ResolvedAskRequest } from './resolve.js';
