// Reads and validates an operator's styles file and merges it over the built-in styles. Every
// problem is collected (not just the first) and reported in one STYLES_INVALID error whose message
// names the file, the style and the field, e.g.
//   styles file /etc/vistyle/styles.yaml: style "pirate", field generation.topP: Too big: ...
import { existsSync, readFileSync } from 'node:fs';
import { dirname, extname, isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { $ZodIssue } from 'zod/v4/core';
import { ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE } from '../../models/lora/names.js';
import { VistyleError } from '../errors.js';
import { builtinStyles, DEFAULT_QUESTION, DEFAULT_STYLE_ID } from './builtin.js';
import {
  StyleEntryInputSchema,
  StyleIdSchema,
  StyleListEntryInputSchema,
  StylesFileSchema,
  type AdapterInput,
  type LocalizedInput,
  type StyleEntryInput,
} from './schema.js';
import type { LocalizedText, Style } from './types.js';


export interface StylesIssue {
  /** The style the problem is in, when it is in one. */
  style?: string;
  /** Dotted field path inside the style (or the file's top level), when known. */
  field?: string;
  message: string;
}

export interface LoadedStyles {
  /** Every style, the default first, then built-ins, then added styles in file order. */
  styles: Style[];
  defaultId: string;
  /** Absolute path of the file these came from, or null for the built-ins alone. */
  file: string | null;
  /** Ids of the styles whose entry names an adapter (a path, or null for none). */
  adapterGiven?: string[];
}

/** The built-in styles with no file. */
export function builtinLoadedStyles(): LoadedStyles {
  return { styles: builtinStyles(), defaultId: DEFAULT_STYLE_ID, file: null };
}

/** Reads, validates and merges a styles file. Throws VistyleError('STYLES_INVALID'). */
export function loadStylesFile(file: string): LoadedStyles {
  const path = resolve(file);
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : String((error as Error).message);
    throw stylesError(path, [{ message: `cannot read the file (${reason})` }], error);
  }
  return parseStylesText(text, path);
}

/** Validates and merges the text of a styles file; `file` names it in errors and anchors adapter paths. */
export function parseStylesText(text: string, file: string): LoadedStyles {
  const path = resolve(file);
  const raw = parseStructured(text, path);
  if (raw === null || raw === undefined) return { ...builtinLoadedStyles(), file: path }; // an empty file
  const top = StylesFileSchema.safeParse(raw);
  if (!top.success) throw stylesError(path, top.error.issues.map((issue) => describeIssue(issue)));
  const issues: StylesIssue[] = [];
  const entries = validateEntries(top.data.styles, issues);
  if (issues.length > 0) throw stylesError(path, issues);
  const merged = mergeEntries(entries, dirname(path), issues);
  const defaultId = top.data.default ?? DEFAULT_STYLE_ID;
  if (!merged.some((style) => style.id === defaultId)) {
    issues.push({ field: 'default', message: `no style with id "${defaultId}"` });
  }
  if (issues.length > 0) throw stylesError(path, issues);
  const first = merged.find((style) => style.id === defaultId)!;
  const adapterGiven = entries.filter((entry) => entry.input.adapter !== undefined).map((entry) => entry.id);
  return { styles: [first, ...merged.filter((style) => style !== first)], defaultId, file: path, adapterGiven };
}

function parseStructured(text: string, path: string): unknown {
  if (extname(path).toLowerCase() === '.json') {
    try {
      return JSON.parse(text) as unknown;
    } catch (error) {
      throw stylesError(path, [{ message: `not valid JSON (${(error as Error).message})` }], error);
    }
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw stylesError(
      path,
      doc.errors.map((error) => ({ message: `not valid YAML: ${error.message.split('\n')[0]}` })),
    );
  }
  return doc.toJS() as unknown;
}

type Entry = { id: string; input: StyleEntryInput };

function validateEntries(styles: unknown[] | Record<string, unknown> | undefined, issues: StylesIssue[]): Entry[] {
  const entries: Entry[] = [];
  if (styles === undefined) return entries;
  if (Array.isArray(styles)) {
    styles.forEach((entry, index) => {
      const parsed = StyleListEntryInputSchema.safeParse(entry);
      if (parsed.success) {
        const { id, ...input } = parsed.data;
        entries.push({ id, input });
        return;
      }
      const id = (entry as { id?: unknown } | null)?.id;
      const name = typeof id === 'string' ? id : `#${index + 1}`;
      for (const issue of parsed.error.issues) issues.push(describeIssue(issue, name));
    });
    return entries;
  }
  for (const [id, entry] of Object.entries(styles)) {
    const idCheck = StyleIdSchema.safeParse(id);
    if (!idCheck.success) issues.push({ style: id, field: 'id', message: `bad style id: ${idCheck.error.issues[0]?.message}` });
    const parsed = StyleEntryInputSchema.safeParse(entry ?? {});
    if (!parsed.success) for (const issue of parsed.error.issues) issues.push(describeIssue(issue, id));
    else if (idCheck.success) entries.push({ id, input: parsed.data });
  }
  return entries;
}

function describeIssue(issue: $ZodIssue, style?: string): StylesIssue {
  const path = issue.path.map(String);
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') message = `unknown field ${issue.keys.map((key) => `"${key}"`).join(', ')}`;
  const field = path.join('.');
  return { ...(style === undefined ? {} : { style }), ...(field ? { field } : {}), message };
}

function mergeEntries(entries: Entry[], baseDir: string, issues: StylesIssue[]): Style[] {
  const styles = builtinStyles();
  const seen = new Set<string>();
  for (const { id, input } of entries) {
    if (seen.has(id)) {
      issues.push({ style: id, message: 'defined twice' });
      continue;
    }
    seen.add(id);
    const issue = (field: string, message: string): void => void issues.push({ style: id, field, message });
    const existing = styles.find((style) => style.id === id);
    if (existing) {
      applyOverrides(existing, input, baseDir, issue);
    } else {
      const added = newStyle(id, input, baseDir, issue);
      if (added) styles.push(added);
    }
  }
  return styles;
}

type IssueSink = (field: string, message: string) => void;

function applyOverrides(style: Style, input: StyleEntryInput, baseDir: string, issue: IssueSink): void {
  if (input.names !== undefined) style.names = localized(input.names, style.names);
  if (input.description !== undefined) style.description = localized(input.description, style.description);
  if (input.systemPrompt !== undefined) style.systemPrompt = input.systemPrompt;
  if (input.examples !== undefined) style.examples = input.examples.map((example) => ({ ...example }));
  if (input.sampleAnswer !== undefined) style.sampleAnswer = localized(input.sampleAnswer, style.sampleAnswer);
  if (input.defaultQuestion !== undefined) {
    style.defaultQuestion = localized(input.defaultQuestion, style.defaultQuestion);
  }
  if (input.generation !== undefined) style.generation = { ...style.generation, ...definedOnly(input.generation) };
  if (input.adapter !== undefined) style.adapter = adapterRef(input.adapter, baseDir, issue);
  if (input.dataPrompt !== undefined) style.dataPrompt = input.dataPrompt;
}

function newStyle(id: string, input: StyleEntryInput, baseDir: string, issue: IssueSink): Style | null {
  let complete = true;
  for (const field of ['names', 'description', 'systemPrompt'] as const) {
    if (input[field] === undefined) {
      issue(field, `required for a new style (built-in ids are ${builtinStyles().map((s) => s.id).join(', ')})`);
      complete = false;
    }
  }
  for (const field of ['names', 'description'] as const) {
    const value = input[field];
    if (value !== undefined && typeof value === 'object' && value.zh === undefined && value.en === undefined) {
      issue(field, 'give zh, en or both');
      complete = false;
    }
  }
  if (!complete) return null;
  const examples = (input.examples ?? []).map((example) => ({ ...example }));
  const firstAnswer = examples[0]?.answer ?? '';
  return {
    id,
    names: localized(input.names!),
    description: localized(input.description!),
    systemPrompt: input.systemPrompt!,
    examples,
    sampleAnswer: input.sampleAnswer ? localized(input.sampleAnswer) : { zh: firstAnswer, en: firstAnswer },
    defaultQuestion: input.defaultQuestion ? localized(input.defaultQuestion, DEFAULT_QUESTION) : { ...DEFAULT_QUESTION },
    generation: definedOnly(input.generation ?? {}),
    adapter: input.adapter === undefined ? null : adapterRef(input.adapter, baseDir, issue),
    dataPrompt: input.dataPrompt ?? null,
    builtin: false,
  };
}

/** A string applies to both languages; a missing language falls back to `base`, then to the other one. */
function localized(input: LocalizedInput, base?: LocalizedText): LocalizedText {
  if (typeof input === 'string') return { zh: input, en: input };
  const zh = input.zh ?? base?.zh ?? input.en ?? '';
  const en = input.en ?? base?.en ?? input.zh ?? '';
  return { zh, en };
}

function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

function adapterRef(input: AdapterInput, baseDir: string, issue: IssueSink): Style['adapter'] {
  if (input === null) return null;
  const given = typeof input === 'string' ? input : input.path;
  const field = typeof input === 'string' ? 'adapter' : 'adapter.path';
  const path = isAbsolute(given) ? given : resolve(baseDir, given);
  for (const name of [ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE]) {
    if (!existsSync(join(path, name))) {
      issue(field, `no ${name} in ${path} (an adapter is a PEFT folder: ${ADAPTER_CONFIG_FILE} + ${ADAPTER_WEIGHTS_FILE})`);
      return null;
    }
  }
  return typeof input === 'string' || input.scale === undefined ? { path } : { path, scale: input.scale };
}

export function formatStylesIssue(issue: StylesIssue): string {
  const where = [issue.style === undefined ? '' : `style "${issue.style}"`, issue.field ? `field ${issue.field}` : '']
    .filter(Boolean)
    .join(', ');
  return where ? `${where}: ${issue.message}` : issue.message;
}

function stylesError(file: string, issues: StylesIssue[], cause?: unknown): VistyleError {
  const message = `styles file ${file}: ${issues.map(formatStylesIssue).join('; ')}`;
  return new VistyleError('STYLES_INVALID', message, {
    ...(cause === undefined ? {} : { cause }),
    details: { file, issues },
  });
}
