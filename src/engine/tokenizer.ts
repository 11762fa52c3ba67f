// The checkpoint's tokenizer (tokenizer.json + tokenizer_config.json) through @huggingface/tokenizers.
//
//   const tok = await loadTokenizer('/path/to/checkpoint');   // folder or tokenizer.json
//   tok.encode('<|im_start|>user\n...')   // special tokens written in the text are recognised
//   tok.decode(ids, { skipSpecialTokens: true })
//
// encode() adds no special tokens unless asked (chat templates write them out themselves). decode()
// treats ids that are not in the vocabulary — the model's embedding has more rows than the
// tokenizer has tokens, and greedy decoding can pick them — as empty text instead of failing.
import { readFile, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { VistyleError } from '../errors.js';

/** The parts of tokenizer_config.json the engine uses, with token objects reduced to strings. */
export interface TokenizerSettings {
  bosToken: string | null;
  eosToken: string | null;
  padToken: string | null;
  unkToken: string | null;
  /** tokenizer_config.json's `chat_template`, when it has one (see chat-template.ts for the rest). */
  chatTemplate: unknown;
}

export interface EncodeOptions {
  /** Let the tokenizer's post-processor add its special tokens (BOS/EOS). Default false. */
  addSpecialTokens?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens (`<|im_end|>`, `<image>`...) from the text. Default false. */
  skipSpecialTokens?: boolean;
}

function tokenString(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return null;
}

export class TextTokenizer {
  readonly settings: TokenizerSettings;
  /** One past the largest token id the tokenizer knows (vocabulary plus added tokens). */
  readonly vocabSize: number;
  /** Ids of the added tokens marked `special` (skipped by decode with skipSpecialTokens). */
  readonly specialTokenIds: ReadonlySet<number>;
  /** Every added token (special or not) by its text. */
  readonly addedTokens: ReadonlyMap<string, number>;
  private readonly tokenizer: Tokenizer;

  private constructor(tokenizer: Tokenizer, settings: TokenizerSettings) {
    this.tokenizer = tokenizer;
    this.settings = settings;
    const special = new Set<number>();
    const added = new Map<string, number>();
    for (const [id, token] of tokenizer.get_added_tokens_decoder()) {
      added.set(token.content, id);
      if (token.special) special.add(id);
    }
    this.specialTokenIds = special;
    this.addedTokens = added;
    let maxId = -1;
    for (const id of tokenizer.get_vocab(true).values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;
  }

  /**
   * Builds a tokenizer from parsed tokenizer.json (and tokenizer_config.json) contents. Throws
   * CHECKPOINT_INVALID when the files are not a tokenizer this library can run.
   */
  static fromJson(tokenizerJson: unknown, tokenizerConfig: unknown = {}, source = 'tokenizer.json'): TextTokenizer {
    if (!tokenizerJson || typeof tokenizerJson !== 'object' || !('model' in tokenizerJson)) {
      throw new VistyleError('CHECKPOINT_INVALID', `${source}: field "model" is missing; this is not a tokenizer.json.`, {
        details: { file: source, field: 'model' },
      });
    }
    const config = (tokenizerConfig && typeof tokenizerConfig === 'object' ? tokenizerConfig : {}) as Record<string, unknown>;
    let tokenizer: Tokenizer;
    try {
      tokenizer = new Tokenizer(tokenizerJson, config);
    } catch (cause) {
      throw new VistyleError('CHECKPOINT_INVALID', `${source}: cannot build the tokenizer (${cause instanceof Error ? cause.message : String(cause)}).`, {
        cause,
        details: { file: source },
      });
    }
    return new TextTokenizer(tokenizer, {
      bosToken: tokenString(config.bos_token),
      eosToken: tokenString(config.eos_token),
      padToken: tokenString(config.pad_token),
      unkToken: tokenString(config.unk_token),
      chatTemplate: config.chat_template ?? null,
    });
  }

  /** Token ids of `text`. Special tokens written in the text (`<|im_start|>`) become their ids. */
  encode(text: string, options: EncodeOptions = {}): number[] {
    return this.tokenizer.encode(text, { add_special_tokens: options.addSpecialTokens ?? false }).ids;
  }

  /** Text of `ids`. Ids the tokenizer does not know decode as empty text. */
  decode(ids: readonly number[], options: DecodeOptions = {}): string {
    const known = ids.every((id) => this.isKnownId(id)) ? (ids as number[]) : ids.filter((id) => this.isKnownId(id));
    if (known.length === 0) return '';
    return this.tokenizer.decode(known, { skip_special_tokens: options.skipSpecialTokens ?? false, clean_up_tokenization_spaces: false });
  }

  /** True when `id` names a token of this tokenizer (vocabulary or added token). */
  isKnownId(id: number): boolean {
    return Number.isInteger(id) && id >= 0 && id < this.vocabSize && this.tokenizer.id_to_token(id) !== undefined;
  }

  isSpecial(id: number): boolean {
    return this.specialTokenIds.has(id);
  }

  tokenToId(token: string): number | undefined {
    return this.tokenizer.token_to_id(token);
  }

  idToToken(id: number): string | undefined {
    return this.isKnownId(id) ? this.tokenizer.id_to_token(id) : undefined;
  }
}

async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new VistyleError('CHECKPOINT_INVALID', `Cannot read ${path}.`, { cause, details: { file: path } });
  }
  try {
    return JSON.parse(text);
  } catch (cause) {
    throw new VistyleError('CHECKPOINT_INVALID', `${path} is not valid JSON.`, { cause, details: { file: path } });
  }
}

async function isDirectory(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isDirectory();
  } catch (cause) {
    throw new VistyleError('CHECKPOINT_INVALID', `No tokenizer at ${path}.`, { cause, details: { file: path } });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * Loads a tokenizer from a folder holding tokenizer.json (and optionally tokenizer_config.json),
 * or from a tokenizer.json file (a tokenizer_config.json beside it is used when present).
 */
export async function loadTokenizer(path: string): Promise<TextTokenizer> {
  const folder = (await isDirectory(path)) ? path : dirname(path);
  const tokenizerPath = folder === path ? join(path, 'tokenizer.json') : path;
  const configPath = join(folder, 'tokenizer_config.json');
  const tokenizerJson = await readJson(tokenizerPath);
  const tokenizerConfig = (await exists(configPath)) ? await readJson(configPath) : {};
  return TextTokenizer.fromJson(tokenizerJson, tokenizerConfig, tokenizerPath);
}
