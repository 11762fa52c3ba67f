// The one place `vistyle ask` turns its --style / --adapter / --raw flags into engine input.
//   (no flags)        the registry's default style
//   --style ID        that style's prompt, examples, overrides and adapter
//   --adapter DIR     a PEFT adapter folder used instead of the style's (its own scale)
//   --raw             a bare conversation: no system prompt, no examples, no overrides; only an
//                     --adapter given on the command line applies
import { resolve } from 'node:path';
import { VistyleError } from '../errors.js';
import { buildStyledRequest, type StyledRequest } from './conversation.js';
import { openStyleRegistry, unknownStyleError } from './registry.js';
import type { Language, Style, StyleRegistry } from './types.js';

export interface AskStyleFlags {
  style?: string;
  adapter?: string;
  raw?: boolean;
}

export interface AskStyleInput extends AskStyleFlags {
  question?: string;
  /** Pictures shown with the question (indexes into the request's images). */
  images?: number[];
  language?: Language;
  /** Defaults to the registry from `stylesFile`, else VISTYLE_STYLES_FILE (not watched). */
  registry?: StyleRegistry;
  /** The styles file (--styles-file); default VISTYLE_STYLES_FILE. */
  stylesFile?: string;
}

export type ResolvedAskRequest = StyledRequest & { style: Style | null };

export function resolveAskRequest(input: AskStyleInput): ResolvedAskRequest {
  if (input.raw && input.style !== undefined) {
    throw new VistyleError('CONFIG_INVALID', '--raw and --style cannot be used together (--raw means no style)');
  }
  const lora = input.adapter ? { path: resolve(input.adapter) } : undefined;
  let style: Style | null = null;
  if (!input.raw) {
    const registry = input.registry ?? openStyleRegistry({ watch: false, ...(input.stylesFile === undefined ? {} : { file: input.stylesFile }) });
    try {
      style = input.style === undefined ? registry.defaultStyle() : (registry.get(input.style) ?? null);
      if (!style) throw unknownStyleError(input.style!, registry);
    } finally {
      if (!input.registry && 'close' in registry && typeof registry.close === 'function') registry.close();
    }
  }
  const request = buildStyledRequest(style, {
    ...(input.question === undefined ? {} : { question: input.question }),
    ...(input.language === undefined ? {} : { language: input.language }),
    ...(input.images === undefined ? {} : { images: input.images }),
    ...(lora === undefined ? {} : { lora }),
    raw: input.raw === true,
  });
  return { ...request, style };
}
