// The application commands vistyle registers, derived from the bot core's command table
// (src/bot/commands.ts: every slash command with its options and zh-CN / zh-TW localizations) plus
// the Discord-only "Ask about this image" message context menu, and the start-up sync that writes
// them only when what Discord holds differs from these definitions.
import {
  ApplicationCommandOptionType,
  ApplicationCommandType,
  ApplicationIntegrationType,
  InteractionContextType,
  type APIApplicationCommand,
  type APIApplicationCommandOption,
  type Client,
  type RESTPostAPIApplicationCommandsJSONBody,
  type RESTPostAPIChatInputApplicationCommandsJSONBody,
} from 'discord.js';
import {
  BOT_COMMANDS,
  discordLocalizations,
  LANGUAGE_CHOICES,
  optionsOn,
  type BotCommand,
  type CommandOption,
  type CommandText,
} from '../../src/bot/commands.js';
import type { Logger } from '../../src/log.js';

/** The message context menu's name (Discord shows it under Apps); not a slash command. */
export const ASK_ABOUT_IMAGE = 'Ask about this image';

export interface StyleChoice {
  id: string;
  names: { en: string; zh: string };
}

/** Discord's limits on choices, string options and descriptions. */
const MAX_CHOICES = 25;
const MAX_STRING_OPTION = 6000;
const MAX_DESCRIPTION = 100;

const ASK_ABOUT_IMAGE_TEXT: CommandText = { en: ASK_ABOUT_IMAGE, zh: '询问这张图片', zhHant: '詢問這張圖片' };

function describe(text: CommandText) {
  const localized = discordLocalizations(text);
  const cut = (value: string) => value.slice(0, MAX_DESCRIPTION);
  return {
    description: cut(localized.en),
    description_localizations: { 'zh-CN': cut(localized['zh-CN']), 'zh-TW': cut(localized['zh-TW']) },
  };
}

function optionDefinition(option: CommandOption, styles: StyleChoice[], maxQuestion: number): APIApplicationCommandOption {
  const base = { name: option.name, ...describe(option.description), required: false };
  switch (option.kind) {
    case 'picture':
      return { ...base, type: ApplicationCommandOptionType.Attachment };
    case 'text':
      return { ...base, type: ApplicationCommandOptionType.String, max_length: maxQuestion };
    case 'language':
      return {
        ...base,
        type: ApplicationCommandOptionType.String,
        choices: LANGUAGE_CHOICES.map((choice) => {
          const names = discordLocalizations(choice.name);
          return { name: names.en, name_localizations: { 'zh-CN': names['zh-CN'], 'zh-TW': names['zh-TW'] }, value: choice.value };
        }),
      };
    case 'style':
      // More styles than Discord allows as choices: accept free text (the core validates the id).
      if (styles.length === 0 || styles.length > MAX_CHOICES) return { ...base, type: ApplicationCommandOptionType.String };
      return {
        ...base,
        type: ApplicationCommandOptionType.String,
        choices: styles.map((style) => ({
          name: style.names.en.slice(0, 100),
          name_localizations: { 'zh-CN': style.names.zh.slice(0, 100), 'zh-TW': style.names.zh.slice(0, 100) },
          value: style.id,
        })),
      };
  }
}

function slash(command: BotCommand, styles: StyleChoice[], maxQuestion: number): RESTPostAPIChatInputApplicationCommandsJSONBody {
  return {
    type: ApplicationCommandType.ChatInput,
    name: command.name,
    ...describe(command.help),
    options: optionsOn(command, 'discord').map((option) => optionDefinition(option, styles, maxQuestion)),
    contexts: [InteractionContextType.Guild, InteractionContextType.BotDM],
    integration_types: [ApplicationIntegrationType.GuildInstall],
  };
}

export function buildCommandDefinitions(options: {
  styles: StyleChoice[];
  maxQuestionChars: number;
}): RESTPostAPIApplicationCommandsJSONBody[] {
  const maxQuestion = Math.max(1, Math.min(options.maxQuestionChars, MAX_STRING_OPTION));
  const menuNames = discordLocalizations(ASK_ABOUT_IMAGE_TEXT);
  return [
    ...BOT_COMMANDS.map((command) => slash(command, options.styles, maxQuestion)),
    {
      type: ApplicationCommandType.Message,
      name: ASK_ABOUT_IMAGE,
      name_localizations: { 'zh-CN': menuNames['zh-CN'], 'zh-TW': menuNames['zh-TW'] },
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
