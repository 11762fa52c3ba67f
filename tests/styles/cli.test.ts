import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runVistyle } from '../support/run-cli.js';

const run = (args: string[]) => runVistyle(args);

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

describe('vistyle styles', () => {
  it('lists the built-in styles with both names and a description, the default marked', async () => {
    const { code, stdout } = await run(['styles', '--file', '']);
    expect(code).toBe(0);
    for (const text of ['plain', 'grumpy', 'cantonese', 'salesman', '暴躁老哥', '广东话', '诚恳推销', 'Grumpy']) {
      expect(stdout).toContain(text);
    }
    expect(stdout).toMatch(/^\* plain/m);
  });

  it('shows a style file\'s additions and adapters, as text and as JSON', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-styles-cli-'));
    dirs.push(dir);
    mkdirSync(join(dir, 'lora'));
    writeFileSync(join(dir, 'lora', 'adapter_config.json'), '{}');
    writeFileSync(join(dir, 'lora', 'adapter_model.safetensors'), '');
    const file = join(dir, 'styles.yaml');
    writeFileSync(
      file,
      'default: pirate\nstyles:\n  pirate:\n    names: { zh: 海盗, en: Pirate }\n    description: { zh: 海盗腔, en: Talks like a pirate }\n    systemPrompt: Arr\n    adapter: { path: lora, scale: 0.5 }\n',
    );
    const text = await run(['styles', '--file', file, '--lang', 'zh']);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^\* pirate +Pirate \/ 海盗/m);
    expect(text.stdout).toContain('海盗腔');
    expect(text.stdout).toContain(`adapter: ${join(dir, 'lora')} (scale 0.5)`);

    const json = await run(['styles', '--file', file, '--json']);
    const parsed = JSON.parse(json.stdout) as { default: string; styles: Array<{ id: string; adapter: unknown }> };
    expect(parsed.default).toBe('pirate');
    expect(parsed.styles.map((s) => s.id)).toEqual(['pirate', 'plain', 'grumpy', 'cantonese', 'salesman']);
    expect(parsed.styles[0]!.adapter).toEqual({ path: join(dir, 'lora'), scale: 0.5 });
  });

  it('fails with one line naming the file, style and field when the file is broken', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vistyle-styles-cli-'));
    dirs.push(dir);
    const file = join(dir, 'styles.yaml');
    writeFileSync(file, 'styles:\n  grumpy:\n    generation: { temperature: -1 }\n');
    const { code, stderr, stdout } = await run(['styles', '--file', file]);
    expect(code).toBe(1);
    expect(stdout).toBe('');
    expect(stderr.trim().split('\n')).toHaveLength(1);
    expect(stderr).toContain(file);
    expect(stderr).toContain('style "grumpy", field generation.temperature');
  });
});
