// The one command table and everything derived from it: the help text, Telegram's command menu,
// Discord's slash command definitions, and the dispatch both adapters share (admin-only commands,
// /language, arguments from text). Runs the real core on a temporary database.
import { afterEach, describe, expect, it } from 'vitest';
import { buildCommandDefinitions, ASK_ABOUT_IMAGE } from '../../adapters/discord/commands.js';
import { commandMenus } from '../../adapters/telegram/commands.js';
import { argsFromText, BOT_COMMANDS, findCommand, helpText, parseLanguageChoice, runCommand } from '../../src/bot/commands.js';
import { t } from '../../src/bot/i18n.js';
import type { CommandContext } from '../../src/bot/types.js';
import { FakeEngine } from './support/fake-engine.js';
import { makeHarness, privateChat, user, type Harness } from './support/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

const userCommands = BOT_COMMANDS.filter((c) => !c.adminOnly).map((c) => c.name);
const adminCommands = BOT_COMMANDS.filter((c) => c.adminOnly).map((c) => c.name);

describe('the command table', () => {
  it('has /language, and every command in the help of both platforms, admin ones for admins only', () => {
    expect(userCommands).toContain('language');
    expect(adminCommands.sort()).toEqual(['queue', 'reload']);
    for (const platform of ['telegram', 'discord'] as const) {
      for (const lang of ['en', 'zh'] as const) {
        const help = helpText(lang, { platform, admin: false });
        const admin = helpText(lang, { platform, admin: true });
        for (const name of userCommands) {
          expect(help).toMatch(new RegExp(`^/${name}\\b.* – ${findCommand(name)!.help[lang]}$`, 'm'));
          expect(admin).toContain(`/${name}`);
        }
        for (const name of adminCommands) {
          expect(help).not.toContain(`/${name}`);
          expect(admin).toMatch(new RegExp(`^/${name} – `, 'm'));
        }
      }
    }
    // Options a platform lacks are not in its usage line: Telegram's /ask takes the message's picture.
    expect(helpText('en', { platform: 'telegram', admin: false })).toMatch(/^\/ask \[question\] – /m);
    expect(helpText('en', { platform: 'discord', admin: false })).toMatch(/^\/ask \[pictures\] \[question\] \[style\] – /m);
  });

  it('gives Telegram a menu of exactly the non-admin commands, in English and Chinese', () => {
    const menus = commandMenus();
    expect(menus.map((m) => m.languageCode)).toEqual([undefined, 'en', 'zh']);
    for (const menu of menus) expect(menu.commands.map((c) => c.command)).toEqual(userCommands);
    const zh = menus.find((m) => m.languageCode === 'zh')!;
    expect(zh.commands.find((c) => c.command === 'language')?.description).toBe(findCommand('language')!.help.zh);
    for (const command of menus.flatMap((m) => m.commands)) {
      expect(command.command).toMatch(/^[a-z0-9_]{1,32}$/); // setMyCommands' rule
      expect(command.description.length).toBeLessThanOrEqual(256);
    }
  });

  it('gives Discord one slash command per table entry (with its options) plus the context menu', () => {
    const definitions = buildCommandDefinitions({ styles: [{ id: 'plain', names: { en: 'Plain', zh: '平实' } }], maxQuestionChars: 500 });
    expect(definitions.map((d) => d.name)).toEqual([...BOT_COMMANDS.map((c) => c.name), ASK_ABOUT_IMAGE]);
    const language = definitions.find((d) => d.name === 'language') as { options: { name: string; choices: { value: string }[] }[] };
    expect(language.options.map((o) => o.name)).toEqual(['language']);
    expect(language.options[0]!.choices.map((c) => c.value)).toEqual(['zh', 'en', 'auto']);
    const ask = definitions.find((d) => d.name === 'ask') as { options: { name: string; type: number }[]; description_localizations: Record<string, string> };
    // up to four pictures (attachments, type 11), asked about together
    expect(ask.options.map((o) => [o.name, o.type])).toEqual([['image', 11], ['question', 3], ['style', 3], ['image2', 11], ['image3', 11], ['image4', 11]]);
    expect(ask.description_localizations['zh-TW']).toBe(findCommand('ask')!.help.zhHant);
  });

  it('finds commands by alias, reads arguments from text, and parses language choices', () => {
    expect(findCommand('start')?.name).toBe('help');
    expect(findCommand('/LANG')?.name).toBe('language');
    expect(findCommand('nope')).toBeUndefined();
    expect(argsFromText(findCommand('style')!, 'telegram', '  Earnest salesman ')).toEqual({ name: 'Earnest salesman' });
    expect(argsFromText(findCommand('language')!, 'telegram', 'zh')).toEqual({ language: 'zh' });
    expect(argsFromText(findCommand('styles')!, 'telegram', 'whatever')).toEqual({});
    expect([parseLanguageChoice('zh-TW'), parseLanguageChoice('中文'), parseLanguageChoice('EN'), parseLanguageChoice('auto'), parseLanguageChoice('de')]).toEqual([
      'zh',
      'zh',
      'en',
      null,
      undefined,
    ]);
  });

  it('dispatches through the core: /language sets and resets the language, admin commands refuse others', () => {
    harness = makeHarness(new FakeEngine());
    const core = harness.core;
    const ctx: CommandContext = { user: user('7', { languageCode: 'en-US' }), chat: privateChat('7') };
    const language = findCommand('language')!;

    expect(runCommand(core, language, ctx, {}).text).toBe(t('en', 'languageCurrent'));
    expect(runCommand(core, language, ctx, { language: 'zh' })).toMatchObject({ ok: true, text: t('zh', 'languageSet') });
    expect(core.languageOf(ctx.user)).toBe('zh');
    expect(runCommand(core, findCommand('help')!, ctx, {}).text).toBe(helpText('zh', { platform: 'telegram', admin: false }));
    expect(runCommand(core, language, ctx, { language: 'klingon' })).toMatchObject({ ok: false, text: t('zh', 'languageCurrent') });
    expect(runCommand(core, language, ctx, { language: 'auto' }).text).toBe(t('en', 'languageSet'));
    expect(core.languageOf(ctx.user)).toBe('en');

    expect(runCommand(core, findCommand('queue')!, ctx, {})).toMatchObject({ ok: false, code: 'NOT_ALLOWED', text: t('en', 'adminOnly') });
    const admin: CommandContext = { user: user('admin'), chat: privateChat('admin') };
    expect(runCommand(core, findCommand('queue')!, admin, {}).text).toMatch(/^Queue: 0 waiting/);
    expect(runCommand(core, findCommand('help')!, admin, {}).text).toBe(helpText('en', { platform: 'telegram', admin: true }));

    // A failing command is a polite message, not an exception.
    const broken = { ...findCommand('styles')!, run: () => { throw new Error('boom'); } };
    const errors: unknown[] = [];
    expect(runCommand(core, broken, ctx, {}, (error) => errors.push(error))).toMatchObject({ ok: false, code: 'INTERNAL', text: t('en', 'error.INTERNAL') });
    expect(errors).toHaveLength(1);
  });
});
