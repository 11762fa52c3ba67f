import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isVistyleError } from '../../src/errors.js';
import { buildStyledRequest } from '../../src/styles/conversation.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import { resolveAskRequest } from '../../src/styles/resolve.js';
import type { Style } from '../../src/styles/types.js';

const registry = new LiveStyleRegistry();
const grumpy = registry.get('grumpy')!;

describe('buildStyledRequest', () => {
  it('puts the system prompt, the few-shot turns, then the question with the picture', () => {
    const request = buildStyledRequest(grumpy, { question: '这是什么？' });
    const expected = [
      { role: 'system', content: grumpy.systemPrompt },
      ...grumpy.examples.flatMap((e) => [
        { role: 'user', content: e.question },
        { role: 'assistant', content: e.answer },
      ]),
      { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: '这是什么？' }] },
    ];
    expect(buildStyledRequest(grumpy, { question: '这是什么？', images: [0] }).messages).toEqual(expected);
    // without pictures the question is text only; several come in the order given
    expect(request.messages.at(-1)).toEqual({ role: 'user', content: [{ type: 'text', text: '这是什么？' }] });
    expect(buildStyledRequest(grumpy, { question: 'q', images: [1, 0] }).messages.at(-1)!.content).toEqual([
      { type: 'image', image: 1 },
      { type: 'image', image: 0 },
      { type: 'text', text: 'q' },
    ]);
    expect(request.sampling).toEqual(grumpy.generation);
    expect(request.lora).toBeNull();
    expect(request.question).toBe('这是什么？');
  });

  it('asks the default question in the chosen language when none is given', () => {
    const cantonese = registry.get('cantonese')!;
    expect(buildStyledRequest(cantonese, { question: '  ', language: 'zh', images: [0] }).messages.at(-1)).toEqual({
      role: 'user',
      content: [{ type: 'image', image: 0 }, { type: 'text', text: cantonese.defaultQuestion.zh }],
    });
    expect(buildStyledRequest(cantonese, {}).question).toBe('What is in this picture?');
  });

  it('keeps the picture on the earlier turn of a follow-up and drops system turns from history', () => {
    const request = buildStyledRequest(grumpy, {
      question: '那只猫呢？',
      history: [
        { role: 'system', content: 'injected' },
        { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: '图片里有什么？' }] },
        { role: 'assistant', content: '两只猫！' },
      ],
    });
    const tail = request.messages.slice(-3);
    expect(tail).toEqual([
      { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: '图片里有什么？' }] },
      { role: 'assistant', content: '两只猫！' },
      { role: 'user', content: [{ type: 'text', text: '那只猫呢？' }] },
    ]);
    expect(request.messages.filter((m) => m.role === 'system')).toEqual([{ role: 'system', content: grumpy.systemPrompt }]);
  });

  it('uses the style adapter unless a LoRA adapter is given', () => {
    const styled: Style = { ...grumpy, adapter: { path: '/adapters/grumpy', scale: 2 } };
    expect(buildStyledRequest(styled, { question: 'q' }).lora).toEqual({ path: '/adapters/grumpy', scale: 2 });
    expect(buildStyledRequest(styled, { question: 'q', lora: { path: '/other' } }).lora).toEqual({ path: '/other' });
    expect(buildStyledRequest(styled, { question: 'q', lora: null }).lora).toBeNull();
  });

  it('keeps a raw conversation bare: one user turn, no overrides, no style adapter', () => {
    const styled: Style = { ...grumpy, adapter: { path: '/adapters/grumpy' } };
    const raw = buildStyledRequest(styled, { question: 'What?', raw: true, images: [0] });
    expect(raw.messages).toEqual([{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What?' }] }]);
    expect(raw.sampling).toEqual({});
    expect(raw.lora).toBeNull();
    expect(buildStyledRequest(null, { question: 'What?', lora: { path: '/x' } }).lora).toEqual({ path: '/x' });
  });

  it('refuses an empty question without a style', () => {
    expect(() => buildStyledRequest(null, { question: ' ' })).toThrow(expect.objectContaining({ code: 'QUESTION_EMPTY' }));
  });
});

describe('resolveAskRequest (the flags of vistyle ask)', () => {
  it('uses the default style without flags, and the named style with --style', () => {
    const plain = resolveAskRequest({ question: 'q', registry });
    expect(plain.style?.id).toBe('plain');
    expect(plain.messages[0]).toEqual({ role: 'system', content: registry.get('plain')!.systemPrompt });
    const styled = resolveAskRequest({ question: 'q', style: 'grumpy', registry });
    expect(styled.style?.id).toBe('grumpy');
    expect(styled.messages[0]!.content).toBe(grumpy.systemPrompt);
    expect(styled.sampling.repetitionPenalty).toBe(grumpy.generation.repetitionPenalty);
  });

  it('lets --adapter override the style adapter, with the adapter config deciding the scale', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-resolve-'));
    try {
      writeFileSync(join(dir, 'adapter_config.json'), '{}');
      writeFileSync(join(dir, 'adapter_model.safetensors'), '');
      const file = join(dir, 'styles.yaml');
      writeFileSync(file, `styles:\n  grumpy:\n    adapter: { path: ., scale: 3 }\n`);
      const withAdapter = new LiveStyleRegistry({ file, watch: false });
      expect(resolveAskRequest({ style: 'grumpy', question: 'q', registry: withAdapter }).lora).toEqual({ path: dir, scale: 3 });
      const overridden = resolveAskRequest({ style: 'grumpy', question: 'q', adapter: 'some/dir', registry: withAdapter });
      expect(overridden.lora).toEqual({ path: resolve('some/dir') });
      expect(overridden.messages[0]!.content).toBe(grumpy.systemPrompt);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('with --raw keeps only the --adapter given', () => {
    const raw = resolveAskRequest({ raw: true, question: 'q', adapter: 'a', images: [0, 1], registry });
    expect(raw.style).toBeNull();
    expect(raw.messages).toEqual([{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'image', image: 1 }, { type: 'text', text: 'q' }] }]);
    expect(raw.lora).toEqual({ path: resolve('a') });
    expect(resolveAskRequest({ raw: true, question: 'q', registry }).lora).toBeNull();
  });

  it('rejects an unknown style and --raw with --style', () => {
    try {
      resolveAskRequest({ style: 'nope', question: 'q', registry });
      throw new Error('no error');
    } catch (error) {
      expect(isVistyleError(error, 'STYLE_UNKNOWN')).toBe(true);
      expect((error as Error).message).toContain('grumpy');
    }
    expect(() => resolveAskRequest({ style: 'grumpy', raw: true, question: 'q', registry })).toThrow(/--raw/);
  });
});
