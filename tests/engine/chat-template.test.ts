import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVistyleError } from '../../src/errors.js';
import { ChatTemplate, loadChatTemplate, templateSource, type TemplateMessage } from '../../src/engine/chat-template.js';
import { HUB_LLAVA_INTERLEAVE_TEMPLATE } from './tokenizer-support.js';

const TINY = join(import.meta.dirname, '..', 'fixtures', 'tiny-a');
const inputs = JSON.parse(readFileSync(join(TINY, 'reference', 'inputs.json'), 'utf8')) as {
  prompt_text: string;
  prompt_text_b: string;
  messages: TemplateMessage[];
  messages_b: TemplateMessage[];
};
const tokenizerConfig = JSON.parse(readFileSync(join(TINY, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;

const ask = (text: string, image = false): TemplateMessage => ({
  role: 'user',
  content: [...(image ? [{ type: 'image' as const }] : []), { type: 'text' as const, text }],
});
const answer = (text: string): TemplateMessage => ({ role: 'assistant', content: [{ type: 'text', text }] });

describe("the fixture checkpoint's template", () => {
  it('renders inputs.json messages to exactly prompt_text (and B)', async () => {
    const template = await loadChatTemplate(join(TINY, 'chat_template.json'), null);
    expect(template.render(inputs.messages)).toBe(inputs.prompt_text);
    expect(template.render(inputs.messages_b)).toBe(inputs.prompt_text_b);
  });

  it('gives the same text from tokenizer_config.json when there is no chat_template.json', async () => {
    const template = await loadChatTemplate(null, tokenizerConfig.chat_template);
    expect(template.render(inputs.messages)).toBe(inputs.prompt_text);
  });
});

describe("the hub's current llava-interleave template ({% generation %} blocks)", () => {
  const template = new ChatTemplate(HUB_LLAVA_INTERLEAVE_TEMPLATE);

  it('renders one picture question in the documented format', () => {
    expect(template.render([ask('What is in this picture?', true)])).toBe(
      '<|im_start|>user\n<image>\nWhat is in this picture?<|im_end|>\n<|im_start|>assistant\n',
    );
  });

  it('renders system prompts and earlier turns, assistant text without the generation tags', () => {
    const text = template.render([
      { role: 'system', content: [{ type: 'text', text: 'Answer like a grumpy baker.' }] },
      ask('What is this?', true),
      answer('Bread. Obviously.'),
      ask('Is it fresh?'),
    ]);
    expect(text).toBe(
      '<|im_start|>system\nAnswer like a grumpy baker.<|im_end|>\n' +
        '<|im_start|>user\n<image>\nWhat is this?<|im_end|>\n' +
        '<|im_start|>assistant\nBread. Obviously.<|im_end|>\n' +
        '<|im_start|>user\nIs it fresh?<|im_end|>\n' +
        '<|im_start|>assistant\n',
    );
    expect(text).not.toMatch(/generation/);
  });

  it('leaves out the generation prompt on request', () => {
    expect(template.render([ask('Hi')], { addGenerationPrompt: false })).toBe('<|im_start|>user\nHi<|im_end|>\n');
  });

  it('handles whitespace-control forms of the tags', () => {
    const t = new ChatTemplate("{% for m in messages %}[{%- generation -%}\n  {{ m['content'][0]['text'] }}  \n{%- endgeneration -%}]{% endfor %}");
    expect(t.render([answer('x')])).toBe('[x]');
  });

  it('keeps text that merely looks like a tag', () => {
    expect(template.render([ask('print "{% generation %}" please')])).toContain('print "{% generation %}" please');
  });
});

describe('template variables and errors', () => {
  it('passes bos/eos tokens from tokenizer_config', () => {
    const t = new ChatTemplate('{{ bos_token }}{{ messages[0].content[0].text }}{{ eos_token }}', { bosToken: '<s>', eosToken: '</s>' });
    expect(t.render([ask('hey')])).toBe('<s>hey</s>');
    const none = new ChatTemplate('[{{ bos_token }}]');
    expect(none.render([])).toBe('[]');
  });

  it('refuses a template that does not parse, and reports raise_exception', () => {
    let error: unknown;
    try {
      new ChatTemplate('{% for m in messages %}', {}, 'chat_template.json');
    } catch (e) {
      error = e;
    }
    expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/chat_template\.json: the chat template cannot be parsed/);
    const strict = new ChatTemplate("{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}ok");
    expect(() => strict.render([{ role: 'system', content: [{ type: 'text', text: 's' }] }])).toThrow(/System role not supported/);
    expect(strict.render([ask('q')])).toBe('ok');
  });

  it('finds the template in each place a checkpoint keeps it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-tpl-'));
    writeFileSync(join(dir, 'chat_template.jinja'), 'J{{ messages | length }}');
    writeFileSync(join(dir, 'chat_template.json'), JSON.stringify({ chat_template: 'S{{ messages | length }}' }));
    writeFileSync(join(dir, 'empty.json'), '{}');
    expect((await loadChatTemplate(join(dir, 'chat_template.jinja'), null)).render([ask('a')])).toBe('J1');
    expect((await loadChatTemplate(join(dir, 'chat_template.json'), 'ignored')).render([ask('a')])).toBe('S1');
    expect(templateSource([{ name: 'tool_use', template: 'T' }, { name: 'default', template: 'D' }])).toBe('D');
    const fails = async (promise: Promise<unknown>, message: RegExp): Promise<void> => {
      const error = await promise.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
      expect((error as Error).message).toMatch(message);
    };
    await fails(loadChatTemplate(join(dir, 'empty.json'), null), /field "chat_template" is missing/);
    await fails(loadChatTemplate(null, undefined), /no chat template/);
    await fails(loadChatTemplate(join(dir, 'missing.json'), null), /Cannot read/);
  });
});
