import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isVistyleError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { LiveStyleRegistry, openStyleRegistry, type ReloadResult } from '../../src/styles/registry.js';
import { loadStylesFile } from '../../src/styles/file.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'vistyle-styles-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function makeAdapterDir(name: string): string {
  const path = join(dir, name);
  mkdirSync(path, { recursive: true });
  writeFileSync(join(path, 'adapter_config.json'), '{}');
  writeFileSync(join(path, 'adapter_model.safetensors'), '');
  return path;
}

function expectStylesError(fn: () => unknown, ...fragments: string[]): void {
  try {
    fn();
  } catch (error) {
    expect(isVistyleError(error, 'STYLES_INVALID')).toBe(true);
    for (const fragment of fragments) expect((error as Error).message).toContain(fragment);
    return;
  }
  throw new Error('expected a STYLES_INVALID error');
}

describe('built-in styles', () => {
  it('has plain (default), grumpy, cantonese and salesman', () => {
    const registry = new LiveStyleRegistry();
    expect(registry.list().map((s) => s.id)).toEqual(['plain', 'grumpy', 'cantonese', 'salesman']);
    expect(registry.defaultStyle().id).toBe('plain');
    expect(registry.get('grumpy')?.names).toEqual({ zh: '暴躁老哥', en: 'Grumpy' });
    expect(registry.get('cantonese')?.names.zh).toBe('广东话');
    expect(registry.get('salesman')?.names.zh).toBe('诚恳推销');
    expect(registry.get('nope')).toBeUndefined();
  });

  it('gives every built-in style the fields the bot shows and the data maker needs', () => {
    for (const style of new LiveStyleRegistry().list()) {
      expect(style.builtin).toBe(true);
      for (const text of [style.names, style.description, style.sampleAnswer, style.defaultQuestion]) {
        expect(text.zh.length).toBeGreaterThan(0);
        expect(text.en.length).toBeGreaterThan(0);
      }
      expect(style.systemPrompt.length).toBeGreaterThan(20);
      expect(style.dataPrompt?.length ?? 0).toBeGreaterThan(10);
      expect(style.adapter).toBeNull();
      // descriptions are one line
      expect(style.description.en).not.toContain('\n');
    }
  });

  it('writes each voice in the language its answers use', () => {
    const registry = new LiveStyleRegistry();
    // Cantonese particles that Mandarin does not use
    expect(registry.get('cantonese')!.systemPrompt).toMatch(/[嘅咗啲喺唔]/);
    expect(registry.get('cantonese')!.defaultQuestion.zh).toMatch(/[咩嘅]/);
    expect(registry.get('cantonese')!.examples.every((e) => /[嘅咗啲喺唔咩]/.test(e.answer))).toBe(true);
    expect(registry.get('grumpy')!.systemPrompt).toContain('暴躁');
    expect(registry.get('salesman')!.systemPrompt).toContain('推销');
    expect(registry.get('grumpy')!.examples.length).toBeGreaterThan(0);
    expect(registry.get('plain')!.defaultQuestion).toEqual({ en: 'What is in this picture?', zh: '图片里有什么？' });
  });

  it('hands out frozen styles, so one caller cannot change another caller\'s voice', () => {
    const registry = new LiveStyleRegistry();
    const before = registry.get('grumpy')!.generation.temperature;
    expect(() => {
      registry.get('grumpy')!.generation.temperature = 99;
    }).toThrow(TypeError);
    expect(() => registry.get('grumpy')!.examples.push({ question: 'q', answer: 'a' })).toThrow(TypeError);
    expect(registry.get('grumpy')!.generation.temperature).toBe(before);
  });
});

describe('styles file', () => {
  it('overrides a built-in style field by field (YAML)', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(
      file,
      ['styles:', '  grumpy:', '    names: { en: Angry bro }', '    generation:', '      temperature: 0.3', ''].join('\n'),
    );
    const builtin = new LiveStyleRegistry().get('grumpy')!;
    const grumpy = loadStylesFile(file).styles.find((s) => s.id === 'grumpy')!;
    expect(grumpy.names).toEqual({ en: 'Angry bro', zh: '暴躁老哥' });
    expect(grumpy.generation.temperature).toBe(0.3);
    expect(grumpy.generation.maxNewTokens).toBe(builtin.generation.maxNewTokens);
    expect(grumpy.generation.repetitionPenalty).toBe(builtin.generation.repetitionPenalty);
    expect(grumpy.systemPrompt).toBe(builtin.systemPrompt);
    expect(grumpy.builtin).toBe(true);
  });

  it('adds a style (JSON list form) with an adapter path relative to the file', () => {
    makeAdapterDir('adapters/pirate');
    const file = join(dir, 'styles.json');
    writeFileSync(
      file,
      JSON.stringify({
        default: 'pirate',
        styles: [
          {
            id: 'pirate',
            names: { zh: '海盗', en: 'Pirate' },
            description: 'Talks like a pirate.',
            systemPrompt: 'You are a pirate. Arr.',
            examples: [{ question: 'What colour is the sea?', answer: 'Blue as me beard, matey!' }],
            generation: { temperature: 1.1, maxNewTokens: 64 },
            adapter: { path: 'adapters/pirate', scale: 0.5 },
            dataPrompt: 'Answer like a pirate.',
          },
        ],
      }),
    );
    const registry = new LiveStyleRegistry({ file, watch: false });
    const pirate = registry.get('pirate')!;
    expect(registry.defaultStyle().id).toBe('pirate');
    expect(registry.list()[0]!.id).toBe('pirate');
    expect(registry.list().map((s) => s.id)).toContain('salesman');
    expect(pirate.builtin).toBe(false);
    expect(pirate.description).toEqual({ zh: 'Talks like a pirate.', en: 'Talks like a pirate.' });
    expect(pirate.adapter).toEqual({ path: join(dir, 'adapters/pirate'), scale: 0.5 });
    expect(pirate.generation).toEqual({ temperature: 1.1, maxNewTokens: 64 });
    expect(pirate.sampleAnswer.en).toBe('Blue as me beard, matey!');
    expect(pirate.defaultQuestion.en).toBe('What is in this picture?');
  });

  it('gives an adapter to a built-in style with the string shorthand', () => {
    const adapter = makeAdapterDir('grumpy-lora');
    const file = join(dir, 'styles.yml');
    writeFileSync(file, 'styles:\n  grumpy:\n    adapter: ./grumpy-lora\n');
    expect(loadStylesFile(file).styles.find((s) => s.id === 'grumpy')!.adapter).toEqual({ path: adapter });
  });

  it('treats an empty file as the built-ins', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, '');
    expect(loadStylesFile(file).styles.map((s) => s.id)).toEqual(['plain', 'grumpy', 'cantonese', 'salesman']);
  });

  it('names the file, the style and the field in errors', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles:\n  grumpy:\n    generation:\n      topP: 3\n');
    expectStylesError(() => loadStylesFile(file), file, 'style "grumpy"', 'field generation.topP');

    writeFileSync(file, 'styles:\n  grumpy:\n    generation:\n      temprature: 0.5\n');
    expectStylesError(() => loadStylesFile(file), 'style "grumpy"', 'field generation', 'temprature');

    writeFileSync(file, 'styles:\n  - id: pirate\n    names: Pirate\n    description: Arr\n');
    expectStylesError(() => loadStylesFile(file), 'style "pirate"', 'field systemPrompt', 'required');

    writeFileSync(file, 'styles:\n  - id: pirate\n    names: 7\n');
    expectStylesError(() => loadStylesFile(file), 'style "pirate"', 'field names');

    writeFileSync(file, 'styles:\n  pirate:\n    names: P\n    description: D\n    systemPrompt: S\n    adapter: ./missing\n');
    expectStylesError(() => loadStylesFile(file), 'style "pirate"', 'field adapter', 'adapter_config.json');

    writeFileSync(file, 'styles:\n  Bad Id:\n    names: P\n');
    expectStylesError(() => loadStylesFile(file), 'style "Bad Id"', 'field id');

    writeFileSync(file, 'default: nobody\n');
    expectStylesError(() => loadStylesFile(file), 'field default', 'nobody');

    writeFileSync(file, 'styles:\n  - id: grumpy\n  - id: grumpy\n');
    expectStylesError(() => loadStylesFile(file), 'style "grumpy"', 'twice');

    writeFileSync(file, 'styles:\n  grumpy: [unclosed\n');
    expectStylesError(() => loadStylesFile(file), file, 'YAML');

    const json = join(dir, 'styles.json');
    writeFileSync(json, '{"styles": ');
    expectStylesError(() => loadStylesFile(json), json, 'JSON');

    expectStylesError(() => loadStylesFile(join(dir, 'absent.yaml')), 'absent.yaml', 'not found');
  });

  it('reports every problem at once', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles:\n  grumpy:\n    generation: { topK: -1 }\n  salesman:\n    examples: [{ question: q }]\n');
    expectStylesError(() => loadStylesFile(file), 'style "grumpy"', 'generation.topK', 'style "salesman"', 'examples.0.answer');
  });

  it('reads VISTYLE_STYLES_FILE when no file is given', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'default: grumpy\n');
    const previous = process.env.VISTYLE_STYLES_FILE;
    process.env.VISTYLE_STYLES_FILE = file;
    try {
      const registry = openStyleRegistry({ watch: false });
      expect(registry.defaultStyle().id).toBe('grumpy');
      expect(registry.file).toBe(file);
    } finally {
      if (previous === undefined) delete process.env.VISTYLE_STYLES_FILE;
      else process.env.VISTYLE_STYLES_FILE = previous;
    }
  });

  it('refuses to start on a broken file', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles: 5\n');
    expectStylesError(() => new LiveStyleRegistry({ file, watch: false }), file, 'field styles');
  });
});

describe('reloading', () => {
  function captureLogs(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk, _encoding, callback) {
        lines.push(String(chunk));
        callback();
      },
    });
    return { logger: createLogger({ level: 'info', destination }), lines };
  }

  function nextReload(registry: LiveStyleRegistry, timeoutMs = 5000): Promise<ReloadResult> {
    return new Promise((resolvePromise, reject) => {
      const timer = setTimeout(() => reject(new Error('no reload within the time-out')), timeoutMs);
      const off = registry.onReload((result) => {
        clearTimeout(timer);
        off();
        resolvePromise(result);
      });
    });
  }

  it('reloads on reload() and keeps the last good styles when the file breaks', () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles:\n  grumpy:\n    names: { en: One }\n');
    const { logger, lines } = captureLogs();
    const registry = new LiveStyleRegistry({ file, watch: false, logger });
    expect(registry.get('grumpy')!.names.en).toBe('One');

    writeFileSync(file, 'styles:\n  grumpy:\n    names: { en: Two }\n');
    expect(registry.reload()).toMatchObject({ ok: true, defaultId: 'plain' });
    expect(registry.get('grumpy')!.names.en).toBe('Two');

    writeFileSync(file, 'styles:\n  grumpy:\n    generation: { temperature: hot }\n');
    const result = registry.reload();
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.message).toContain('generation.temperature');
    expect(registry.get('grumpy')!.names.en).toBe('Two');
    const logged = lines.join('');
    expect(logged).toContain('keeping the last good styles');
    expect(logged).toContain('generation.temperature');
  });

  it('reloads by itself when the file is edited in place and when it is replaced atomically', async () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles:\n  grumpy:\n    names: { en: One }\n');
    const { logger } = captureLogs();
    const registry = new LiveStyleRegistry({ file, debounceMs: 50, logger });
    try {
      let reloaded = nextReload(registry);
      writeFileSync(file, 'styles:\n  grumpy:\n    names: { en: Two }\n');
      expect(await reloaded).toMatchObject({ ok: true });
      expect(registry.get('grumpy')!.names.en).toBe('Two');

      reloaded = nextReload(registry);
      const temp = join(dir, '.styles.yaml.tmp');
      writeFileSync(temp, 'styles:\n  pirate:\n    names: Pirate\n    description: Arr\n    systemPrompt: Arr!\n');
      renameSync(temp, file);
      // the temp file's own events may trigger the first reload; wait until the pirate shows up
      let result = await reloaded;
      while (result.ok && !registry.get('pirate')) result = await nextReload(registry);
      expect(registry.get('pirate')!.systemPrompt).toBe('Arr!');

      reloaded = nextReload(registry);
      writeFileSync(file, 'styles: {{{');
      expect((await reloaded).ok).toBe(false);
      expect(registry.get('pirate')!.systemPrompt).toBe('Arr!');

      // and it comes back when the file is fixed
      reloaded = nextReload(registry);
      writeFileSync(file, 'default: salesman\n');
      expect(await reloaded).toMatchObject({ ok: true, defaultId: 'salesman' });
      expect(registry.get('pirate')).toBeUndefined();
    } finally {
      registry.close();
    }
  });

  it('debounces a burst of writes into one reload', async () => {
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'default: plain\n');
    const registry = new LiveStyleRegistry({ file, debounceMs: 150, logger: captureLogs().logger });
    try {
      let reloads = 0;
      registry.onReload(() => reloads++);
      const first = nextReload(registry);
      for (let i = 0; i < 5; i++) writeFileSync(file, `default: ${i % 2 ? 'grumpy' : 'plain'}\n`);
      writeFileSync(file, 'default: cantonese\n');
      // Wait for the reload itself (not a fixed time, which a loaded machine may overrun), then
      // give a second one ample time to show up.
      await first;
      await new Promise((r) => setTimeout(r, 600));
      expect(reloads).toBe(1);
      expect(registry.defaultStyle().id).toBe('cantonese');
    } finally {
      registry.close();
    }
  });
});
