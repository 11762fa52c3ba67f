// The styles file an operator writes (YAML or JSON). Every object is strict so that a typo such as
// `temprature` is reported instead of silently ignored. `styles` is either a list of entries with
// an `id`, or a map from id to entry (entries are validated one by one, so that each problem can
// be attributed to its style). An entry whose id is a built-in style overrides only the
// fields it names; any other id adds a style and must give names, description and systemPrompt.
import { z } from 'zod';

export const STYLE_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,31}$/;

export const StyleIdSchema = z
  .string()
  .regex(STYLE_ID_PATTERN, 'must be 1-32 characters of a-z, 0-9, "-" or "_", starting with a letter or digit');

const NonEmptyText = z.string().trim().min(1, 'must not be empty');

/** A string (used for both languages) or `{zh, en}` with either or both given. */
export const LocalizedInputSchema = z.union([
  NonEmptyText,
  z.strictObject({ zh: NonEmptyText.optional(), en: NonEmptyText.optional() }),
], { error: 'must be text, or {zh, en} with text' });
export type LocalizedInput = z.infer<typeof LocalizedInputSchema>;

export const GenerationInputSchema = z.strictObject({
  temperature: z.number().min(0).max(10).optional(),
  topP: z.number().gt(0).max(1).optional(),
  topK: z.number().int().min(0).optional(),
  repetitionPenalty: z.number().gt(0).max(10).optional(),
  noRepeatNgramSize: z.number().int().min(0).max(64).optional(),
  maxNewTokens: z.number().int().min(1).max(32768).optional(),
});

/** A folder path (relative to the styles file), or `{path, scale}`; null removes an adapter. */
export const AdapterInputSchema = z.union([
  NonEmptyText,
  z.strictObject({ path: NonEmptyText, scale: z.number().finite().optional() }),
  z.null(),
], { error: 'must be a folder path, {path, scale}, or null' });
export type AdapterInput = z.infer<typeof AdapterInputSchema>;

export const ExampleInputSchema = z.strictObject({ question: NonEmptyText, answer: NonEmptyText });

const styleFields = {
  names: LocalizedInputSchema.optional(),
  description: LocalizedInputSchema.optional(),
  systemPrompt: z.string().optional(),
  examples: z.array(ExampleInputSchema).max(16).optional(),
  sampleAnswer: LocalizedInputSchema.optional(),
  defaultQuestion: LocalizedInputSchema.optional(),
  generation: GenerationInputSchema.optional(),
  adapter: AdapterInputSchema.optional(),
  dataPrompt: z.union([NonEmptyText, z.null()], { error: 'must be text or null' }).optional(),
};

export const StyleEntryInputSchema = z.strictObject(styleFields);
export type StyleEntryInput = z.infer<typeof StyleEntryInputSchema>;

export const StyleListEntryInputSchema = z.strictObject({ id: StyleIdSchema, ...styleFields });

export const StylesFileSchema = z.strictObject({
  /** Id of the default style (plain unless given). */
  default: StyleIdSchema.optional(),
  styles: z
    .union([z.array(z.unknown()), z.record(z.string(), z.unknown())], {
      error: 'must be a list of styles with ids, or a map from id to style',
    })
    .optional(),
});
export type StylesFileInput = z.infer<typeof StylesFileSchema>;
