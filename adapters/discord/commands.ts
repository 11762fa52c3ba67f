// The application commands vistyle registers, with zh-CN / zh-TW localizations, and the start-up
// sync that writes them only when what Discord holds differs from these definitions.
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  InteractionContextType,
  type APIApplicationCommand,
  type Client,
  type RESTPostAPIApplicationCommandsJSONBody,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import type { Logger } from '../../src/log.js';

/** Command names, shared by the definitions and the dispatcher. */
export const CommandName = {
  Ask: 'ask',
  Style: 'style',
  Styles: 'styles',
  Help: 'help',
  Reset: 'reset',
  Queue: 'queue',
  Reload: 'reload',
  AskAboutImage: 'Ask about this image',
} as const;

export interface StyleChoice {
  id: string;
  names: { en: string; zh: string };
}

/** Discord's limits on choices and string options. */
const MAX_CHOICES = 25;
const MAX_STRING_OPTION = 6000;

type Localized = { en: string; 'zh-CN': string; 'zh-TW': string };

const TEXT = {
  ask: { en: 'Ask about a picture', 'zh-CN': '就一张图片提问', 'zh-TW': '就一張圖片提問' },
  askImage: { en: 'The picture', 'zh-CN': '图片', 'zh-TW': '圖片' },
  askQuestion: {
    en: 'Your question (leave empty for a description)',
    'zh-CN': '你的问题（留空则描述图片）',
    'zh-TW': '你的問題（留空則描述圖片）',
  },
  askStyle: { en: 'Answer in this style (this time only)', 'zh-CN': '本次回答使用的风格', 'zh-TW': '本次回答使用的風格' },
  style: { en: 'Show or set the answer style', 'zh-CN': '查看或设置回答风格', 'zh-TW': '查看或設定回答風格' },
  styleName: { en: 'The style to use from now on', 'zh-CN': '之后使用的风格', 'zh-TW': '之後使用的風格' },
  styles: { en: 'Every style, with a sample answer', 'zh-CN': '所有风格及示例回答', 'zh-TW': '所有風格及範例回答' },
  help: { en: 'How to use this bot', 'zh-CN': '使用说明', 'zh-TW': '使用說明' },
  reset: { en: 'Forget this conversation', 'zh-CN': '忘掉当前对话', 'zh-TW': '忘掉目前的對話' },
  queue: { en: 'Queue status (bot admins)', 'zh-CN': '队列状态（机器人管理员）', 'zh-TW': '佇列狀態（機器人管理員）' },
  reload: { en: 'Reload the styles file (bot admins)', 'zh-CN': '重新加载风格文件（机器人管理员）', 'zh-TW': '重新載入風格檔案（機器人管理員）' },
  askAboutImage: { en: CommandName.AskAboutImage, 'zh-CN': '询问这张图片', 'zh-TW': '詢問這張圖片' },
} satisfies Record<string, Localized>;

const zh = (text: Localized) => ({ 'zh-CN': text['zh-CN'], 'zh-TW': text['zh-TW'] });

function styleOption(name: string, text: Localized, styles: StyleChoice[]) {
  const option = {
    type: ApplicationCommandOptionType.String as const,
    name,
    description: text.en,
    description_localizations: zh(text),
    required: false,
  };
  // More styles than Discord allows as choices: accept free text (the core validates the id).
  if (styles.length === 0 || styles.length > MAX_CHOICES) return option;
  return {
    ...option,
    choices: styles.map((style) => ({
      name: style.names.en.slice(0, 100),
      name_localizations: { 'zh-CN': style.names.zh.slice(0, 100), 'zh-TW': style.names.zh.slice(0, 100) },
      value: style.id,
    })),
  };
}

function slash(
  name: string,
  text: Localized,
  options: RESTPostAPIChatInputApplicationCommandsJSONBody['options'] = [],
): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return {
    type: ApplicationCommandType.ChatInput,
    name,
    description: text.en,
    description_localizations: zh(text),
    options,
    contexts: [InteractionContextType.Guild, InteractionContextType.BotDM],
    integration_types: [ApplicationIntegrationType.GuildInstall],
  };
}

export function buildCommandDefinitions(options: {
  styles: StyleChoice[];
  maxQuestionChars: number;
}): RESTPostAPIApplicationCommandsJSONBody[] {
  const maxQuestion = Math.max(1, Math.min(options.maxQuestionChars, MAX_STRING_OPTION));
  return [
    slash(CommandName.Ask, TEXT.ask, [
      {
        type: ApplicationCommandOptionType.Attachment,
        name: 'image',
        description: TEXT.askImage.en,
        description_localizations: zh(TEXT.askImage),
        required: false,
      },
      {
        type: ApplicationCommandOptionType.String,
        name: 'question',
        description: TEXT.askQuestion.en,
        description_localizations: zh(TEXT.askQuestion),
        required: false,
        max_length: maxQuestion,
      },
      styleOption('style', TEXT.askStyle, options.styles),
    ]),
    slash(CommandName.Style, TEXT.style, [styleOption('name', TEXT.styleName, options.styles)]),
    slash(CommandName.Styles, TEXT.styles),
    slash(CommandName.Help, TEXT.help),
    slash(CommandName.Reset, TEXT.reset),
    slash(CommandName.Queue, TEXT.queue),
    slash(CommandName.Reload, TEXT.reload),
    {
      type: ApplicationCommandType.Message,
      name: CommandName.AskAboutImage,
      name_localizations: zh(TEXT.askAboutImage),
      contexts: [InteractionContextType.Guild, InteractionContextType.BotDM],
      integration_types: [ApplicationIntegrationType.GuildInstall],
    },
  ];
}

/**
 * Register the definitions (globally, or to one guild) unless Discord already holds exactly these.
 * Global registrations are rate limited and take a while to propagate, so an unchanged set is
 * never rewritten. Returns whether it wrote.
 */
export async function syncCommands(
  client: Client<true>,
  definitions: RESTPostAPIApplicationCommandsJSONBody[],
  guildId: string | undefined,
  logger: Logger,
): Promise<boolean> {
  const manager = client.application.commands;
  const existing = await manager.fetch({ guildId, withLocalizations: true });
  const unchanged =
    existing.size === definitions.length &&
    definitions.every((definition) =>
      existing.some(
        (command) =>
          command.name === definition.name &&
          command.type === (definition.type ?? ApplicationCommandType.ChatInput) &&
          // equals() reads API (snake_case) definitions too; its typing only lists full commands.
          command.equals(definition as unknown as APIApplicationCommand, true),
      ),
    );
  if (unchanged) {
    logger.info({ scope: guildId ? 'guild' : 'global', commands: definitions.length }, 'discord commands unchanged');
    return false;
  }
  if (guildId) await manager.set(definitions, guildId);
  else await manager.set(definitions);
  logger.info({ scope: guildId ? 'guild' : 'global', commands: definitions.length }, 'discord commands registered');
  return true;
}
