// The command menu Telegram shows (setMyCommands), derived from the core's command table
// (src/bot/commands.ts): every command that is not for bot admins, in English for everyone and in
// Chinese for clients whose language is Chinese (language_code scope). Admin commands and aliases
// (/start, /lang) work when typed but are left out of the menu.
import { BOT_COMMANDS } from '../../src/bot/commands.js';
import type { Language } from '../../src/bot/types.js';

export interface MenuCommand {
  command: string;
  description: string;
}

/** The menu in one language. */
export function menuCommands(lang: Language): MenuCommand[] {
  return BOT_COMMANDS.filter((command) => !command.adminOnly).map((command) => ({ command: command.name, description: command.help[lang] }));
}

/** setMyCommands calls: the default list (English) and one per language, by language_code. */
export function commandMenus(): { languageCode?: string; commands: MenuCommand[] }[] {
  return [{ commands: menuCommands('en') }, { languageCode: 'en', commands: menuCommands('en') }, { languageCode: 'zh', commands: menuCommands('zh') }];
}
