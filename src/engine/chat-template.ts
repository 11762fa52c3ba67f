// The checkpoint's own chat template, rendered with @huggingface/jinja the way transformers'
// `apply_chat_template` does (trim_blocks + lstrip_blocks; `messages`, `add_generation_prompt` and
// the special-token strings as variables). Never a hard-coded prompt format: the tiny fixtures and
// the real llava-interleave checkpoint use different templates.
//
// The hub's current llava-interleave template wraps assistant text in `{% generation %}` ...
// `{% endgeneration %}`, a transformers extension that only marks the assistant's tokens for
// training masks; it renders its body unchanged. @huggingface/jinja (>= 0.5) removes those tags
// itself before parsing (honouring `{%-`/`-%}`); tests/engine/chat-template.test.ts pins that.
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { Template } from '@huggingface/jinja';
import { VistyleError } from '../errors.js';

export type TemplateContent = { type: 'image' } | { type: 'text'; text: string };

/** A message in the Hugging Face multimodal chat format. */
export interface TemplateMessage {
  role: 'system' | 'user' | 'assistant';
  content: TemplateContent[];
}

/** Special-token strings the template may use (tokenizer_config.json's bos_token, eos_token...). */
export interface TemplateTokens {
  bosToken?: string | null;
  eosToken?: string | null;
  padToken?: string | null;
  unkToken?: string | null;
}

export interface RenderOptions {
  /** Append the assistant turn's opening (`<|im_start|>assistant\n`). Default true. */
  addGenerationPrompt?: boolean;
}

export class ChatTemplate {
  readonly source: string;
  private readonly template: Template;
  private readonly tokens: TemplateTokens;

  /** Parses `source`; throws CHECKPOINT_INVALID when it is not a template jinja can run. */
  constructor(source: string, tokens: TemplateTokens = {}, origin = 'chat template') {
    this.source = source;
    this.tokens = tokens;
    try {
      this.template = new Template(source);
    } catch (cause) {
      throw new VistyleError('CHECKPOINT_INVALID', `${origin}: the chat template cannot be parsed (${cause instanceof Error ? cause.message : String(cause)}).`, {
        cause,
        details: { file: origin },
      });
    }
  }

  /** The prompt text for `messages`. Throws CHECKPOINT_INVALID when the template refuses them. */
  render(messages: readonly TemplateMessage[], options: RenderOptions = {}): string {
    try {
      return this.template.render({
        messages,
        add_generation_prompt: options.addGenerationPrompt ?? true,
        bos_token: this.tokens.bosToken ?? '',
        eos_token: this.tokens.eosToken ?? '',
        pad_token: this.tokens.padToken ?? '',
        unk_token: this.tokens.unkToken ?? '',
      });
    } catch (cause) {
      throw new VistyleError('CHECKPOINT_INVALID', `The checkpoint's chat template failed on this conversation: ${cause instanceof Error ? cause.message : String(cause)}`, {
        cause,
      });
    }
  }
}

/**
 * The template text from one of the places a checkpoint keeps it: a `chat_template.jinja` text, a
 * `chat_template.json` object (`{"chat_template": "..."}`), or tokenizer_config.json's
 * `chat_template` (a string, or a list of `{name, template}` where "default" is used).
 * Returns null when there is none.
 */
export function templateSource(value: unknown): string | null {
  if (typeof value === 'string') return value;
  if (Array.isArray(value)) {
    const named = value as { name?: unknown; template?: unknown }[];
    const pick = named.find((t) => t.name === 'default') ?? named[0];
    return typeof pick?.template === 'string' ? pick.template : null;
  }
  if (value && typeof value === 'object' && 'chat_template' in value) {
    return templateSource((value as { chat_template: unknown }).chat_template);
  }
  return null;
}

/**
 * Loads the chat template a model folder ships: the file `chatTemplatePath` (`.jinja` text or
 * `chat_template.json`) when given, else tokenizer_config.json's `chat_template`
 * (`tokenizerConfigTemplate`, as TextTokenizer.settings.chatTemplate holds it). transformers'
 * processors use chat_template.json/.jinja first, which is what this order follows.
 * Throws CHECKPOINT_INVALID when neither has one.
 */
export async function loadChatTemplate(
  chatTemplatePath: string | null,
  tokenizerConfigTemplate: unknown,
  tokens: TemplateTokens = {},
): Promise<ChatTemplate> {
  if (chatTemplatePath) {
    let text: string;
    try {
      text = await readFile(chatTemplatePath, 'utf8');
    } catch (cause) {
      throw new VistyleError('CHECKPOINT_INVALID', `Cannot read ${chatTemplatePath}.`, { cause, details: { file: chatTemplatePath } });
    }
    let source: string | null;
    if (extname(chatTemplatePath) === '.json') {
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch (cause) {
        throw new VistyleError('CHECKPOINT_INVALID', `${chatTemplatePath} is not valid JSON.`, { cause, details: { file: chatTemplatePath } });
      }
      source = templateSource(json);
      if (source === null) {
        throw new VistyleError('CHECKPOINT_INVALID', `${chatTemplatePath}: field "chat_template" is missing.`, {
          details: { file: chatTemplatePath, field: 'chat_template' },
        });
      }
    } else {
      source = text;
    }
    return new ChatTemplate(source, tokens, chatTemplatePath);
  }
  const source = templateSource(tokenizerConfigTemplate);
  if (source === null) {
    throw new VistyleError('CHECKPOINT_INVALID', 'The checkpoint has no chat template (no chat_template.json and no "chat_template" in tokenizer_config.json).', {
      details: { file: 'tokenizer_config.json', field: 'chat_template' },
    });
  }
  return new ChatTemplate(source, tokens, 'tokenizer_config.json');
}
