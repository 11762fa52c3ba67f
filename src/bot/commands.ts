// The one command table. Every command the bot understands is described here once: its name, its
// options, whether it is for bot admins, its help line in Chinese and English, and what running
// it does. The help text (/help), Telegram's command menu (setMyCommands), Discord's slash
// commands and both adapters' dispatchers are all derived from it, so a command added here exists
// everywhere and is in the help.
import { t } from './i18n.js';
import type { BotCore, CommandContext, CommandResult, Language, Platform } from './types.js';

/** A text in both UI languages; `zhHant` for clients that want traditional characters (Discord zh-TW). */
export interface CommandText {
  en: string;
  zh: string;
  zhHant?: string;
}

/**
 * - `picture`: a picture (Discord: an attachment option; Telegram: the message's own picture).
 * - `text`: free text (the question).
 * - `style`: a style id or name (Discord: choices from the styles file).
 * - `language`: `zh`, `en` or `auto`.
 */
export type CommandOptionKind = 'picture' | 'text' | 'style' | 'language';

export interface CommandOption {
  /** Lower-case a-z, digits, `-`, `_` (Discord's rule for option names). */
  name: string;
  kind: CommandOptionKind;
  /** How the option appears in the help text's usage line (`/style [name]`). */
  label: CommandText;
  description: CommandText;
  /** Platforms that offer the option (default: all). Telegram has no per-request style option. */
  platforms?: Platform[];
  /** Left out of the help text's usage line (the 2nd to 4th picture of Discord's /ask). */
  hiddenInHelp?: boolean;
}

/** A command's arguments by option name (Telegram's text after the command goes to the first text-like option). */
export type CommandArgs = Partial<Record<string, string>>;

export interface BotCommand {
  /** Lower-case name without the slash. */
  name: string;
  /** Other names that also work when typed (Telegram `/start`, `/lang`); not in menus or help. */
  aliases?: string[];
  options: CommandOption[];
  /** Only bot admins (VISTYLE_ADMIN_IDS) may run it; listed in the help only for them. */
  adminOnly: boolean;
  /** The help line, also the description in Telegram's menu and Discord's command list. */
  help: CommandText;
  /**
   * Runs the command. `ask` has none: it is a question for the model, which each adapter turns
   * into a BotRequest (with the message's or the option's picture).
   */
  run?: (core: BotCore, ctx: CommandContext, args: CommandArgs) => CommandResult;
}

/** The language option's values, in the order pickers show them. */
export const LANGUAGE_CHOICES = [
  { value: 'zh', name: { en: 'Chinese (中文)', zh: '中文', zhHant: '中文' } },
  { value: 'en', name: { en: 'English', zh: 'English', zhHant: 'English' } },
  { value: 'auto', name: { en: 'Automatic (my app’s language)', zh: '自动（跟随客户端语言）', zhHant: '自動（跟隨用戶端語言）' } },
] as const satisfies readonly { value: string; name: CommandText }[];

/** `zh` / `中文` / `zh-TW` -> zh, `en...` -> en, `auto` or empty -> null (follow the app again); else undefined. */
export function parseLanguageChoice(value: string | undefined): Language | null | undefined {
  const choice = (value ?? '').trim().toLowerCase();
  if (choice === '' || choice === 'auto' || choice === '自动' || choice === '自動') return null;
  if (choice.startsWith('zh') || choice.startsWith('中') || choice === 'chinese' || choice === 'yue') return 'zh';
  if (choice.startsWith('en')) return 'en';
  return undefined;
}

export const BOT_COMMANDS: readonly BotCommand[] = [
  {
    name: 'ask',
    adminOnly: false,
    help: { en: 'Ask about a picture', zh: '就图片提问', zhHant: '就圖片提問' },
    options: [
      {
        name: 'image',
        kind: 'picture',
        label: { en: 'pictures', zh: '图片' },
        description: { en: 'The picture (a GIF or a short video works too)', zh: '图片（也可以是 GIF 或短视频）', zhHant: '圖片（也可以是 GIF 或短影片）' },
        platforms: ['discord'],
      },
      {
        name: 'question',
        kind: 'text',
        label: { en: 'question', zh: '问题' },
        description: {
          en: 'Your question (leave empty for a description)',
          zh: '你的问题（留空则描述图片）',
          zhHant: '你的問題（留空則描述圖片）',
        },
      },
      {
        name: 'style',
        kind: 'style',
        label: { en: 'style', zh: '风格' },
        description: { en: 'Answer in this style (this time only)', zh: '本次回答使用的风格', zhHant: '本次回答使用的風格' },
        platforms: ['discord'],
      },
      // Discord's /ask takes up to four pictures, asked about together (image, image2..image4).
      ...[2, 3, 4].map(
        (n): CommandOption => ({
          name: `image${n}`,
          kind: 'picture',
          label: { en: `picture ${n}`, zh: `图片 ${n}` },
          description: { en: `Picture ${n}, asked about with the others`, zh: `第 ${n} 张图片，和其他图片一起提问`, zhHant: `第 ${n} 張圖片，和其他圖片一起提問` },
          platforms: ['discord'],
          hiddenInHelp: true,
        }),
      ),
    ],
  },
  {
    name: 'style',
    adminOnly: false,
    help: { en: 'Show or set the answer style', zh: '查看或设置回答风格', zhHant: '查看或設定回答風格' },
    options: [
      {
        name: 'name',
        kind: 'style',
        label: { en: 'name', zh: '名称' },
        description: { en: 'The style to use from now on', zh: '之后使用的风格', zhHant: '之後使用的風格' },
      },
    ],
    run: (core, ctx, args) => {
      const name = args.name?.trim();
      return name ? core.setStyle(ctx, name) : core.showStyle(ctx);
    },
  },
  {
    name: 'styles',
    adminOnly: false,
    help: { en: 'Every style, with a sample answer', zh: '所有风格及示例回答', zhHant: '所有風格及範例回答' },
    options: [],
    run: (core, ctx) => core.listStyles(ctx),
  },
  {
    name: 'language',
    aliases: ['lang'],
    adminOnly: false,
    help: { en: 'Choose the language I answer in', zh: '选择我回答时使用的语言', zhHant: '選擇我回答時使用的語言' },
    options: [
      {
        name: 'language',
        kind: 'language',
        label: { en: 'zh|en|auto', zh: 'zh|en|auto' },
        description: { en: 'Chinese, English, or your app’s language', zh: '中文、英文，或跟随客户端语言', zhHant: '中文、英文，或跟隨用戶端語言' },
      },
    ],
    run: (core, ctx, args) => {
      const choice = args.language?.trim() ?? '';
      const language = choice === '' ? undefined : parseLanguageChoice(choice);
      // No (or an unknown) choice: say which language is in use and how to change it.
      if (language === undefined) return { ok: choice === '', text: t(core.languageOf(ctx.user, ctx.locale), 'languageCurrent') };
      return core.setLanguage(ctx, language);
    },
  },
  {
    name: 'reset',
    adminOnly: false,
    help: { en: 'Forget this conversation', zh: '忘掉当前对话', zhHant: '忘掉目前的對話' },
    options: [],
    run: (core, ctx) => core.reset(ctx),
  },
  {
    name: 'help',
    aliases: ['start'],
    adminOnly: false,
    help: { en: 'How to use this bot', zh: '使用说明', zhHant: '使用說明' },
    options: [],
    run: (core, ctx) => core.help(ctx),
  },
  {
    name: 'queue',
    adminOnly: true,
    help: { en: 'Queue status (bot admins)', zh: '队列状态（机器人管理员）', zhHant: '佇列狀態（機器人管理員）' },
    options: [],
    run: (core, ctx) => core.queueStatus(ctx),
  },
  {
    name: 'reload',
    adminOnly: true,
    help: { en: 'Reload the styles file (bot admins)', zh: '重新加载风格文件（机器人管理员）', zhHant: '重新載入風格檔案（機器人管理員）' },
    options: [],
    run: (core, ctx) => core.reloadStyles(ctx),
  },
];

/** The command called `name` (or one of its aliases), case-insensitive. */
export function findCommand(name: string): BotCommand | undefined {
  const wanted = name.trim().toLowerCase().replace(/^\//, '');
  return BOT_COMMANDS.find((command) => command.name === wanted || command.aliases?.includes(wanted));
}

/** The options a platform offers for a command. */
export function optionsOn(command: BotCommand, platform: Platform): CommandOption[] {
  return command.options.filter((option) => !option.platforms || option.platforms.includes(platform));
}

/**
 * Arguments from a command's text (Telegram: everything after `/style`): the whole text goes to
 * the first text, style or language option the platform offers.
 */
export function argsFromText(command: BotCommand, platform: Platform, text: string): CommandArgs {
  const target = optionsOn(command, platform).find((option) => option.kind !== 'picture');
  const value = text.trim();
  return target && value !== '' ? { [target.name]: value } : {};
}

/**
 * Runs a command for a platform's dispatcher: admins-only commands refuse others politely, and a
 * failure inside is a polite message (the adapter logs nothing itself; `onError` may).
 */
export function runCommand(
  core: BotCore,
  command: BotCommand,
  ctx: CommandContext,
  args: CommandArgs,
  onError?: (error: unknown) => void,
): CommandResult {
  const lang = () => {
    try {
      return core.languageOf(ctx.user, ctx.locale);
    } catch {
      return 'en' as const;
    }
  };
  if (command.adminOnly && !core.isAdmin(ctx.user)) return { ok: false, code: 'NOT_ALLOWED', text: t(lang(), 'adminOnly') };
  if (!command.run) return core.help(ctx);
  try {
    return command.run(core, ctx, args);
  } catch (error) {
    onError?.(error);
    return { ok: false, code: 'INTERNAL', text: t(lang(), 'error.INTERNAL') };
  }
}

/** The /help text for one platform: what the bot does, then one line per command it offers this person. */
export function helpText(lang: Language, options: { platform: Platform; admin: boolean }): string {
  const line = (command: BotCommand) => {
    const usage = optionsOn(command, options.platform)
      .filter((option) => !option.hiddenInHelp)
      .map((option) => `[${option.label[lang]}]`)
      .join(' ');
    return `/${command.name}${usage ? ` ${usage}` : ''} – ${command.help[lang]}`;
  };
  const lines = [t(lang, 'helpIntro'), '', ...BOT_COMMANDS.filter((c) => !c.adminOnly).map(line)];
  const adminCommands = BOT_COMMANDS.filter((c) => c.adminOnly);
  if (options.admin && adminCommands.length > 0) lines.push('', t(lang, 'helpAdmins'), ...adminCommands.map(line));
  return lines.join('\n');
}

/** A command's text in a Discord locale family (`zh-TW` wants traditional characters where given). */
export function discordLocalizations(text: CommandText): { en: string; 'zh-CN': string; 'zh-TW': string } {
  return { en: text.en, 'zh-CN': text.zh, 'zh-TW': text.zhHant ?? text.zh };
}
