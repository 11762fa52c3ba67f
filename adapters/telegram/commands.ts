// The command menu Telegram shows (setMyCommands), in English for everyone and in Chinese for
// clients whose language is Chinese (language_code scope). /queue (admins) and /language work
// when typed but are left out of the menu.
import type { Language } from '../../src/bot/types.js';

export interface MenuCommand {
  command: string;
  description: Record<Language, string>;
}

export const MENU_COMMANDS: readonly MenuCommand[] = [
  { command: 'ask', description: { en: 'Ask about a picture', zh: '就图片提问' } },
  { command: 'style', description: { en: 'Show or set the answer style', zh: '查看或设置回答风格' } },
  { command: 'styles', description: { en: 'Every style, with a sample answer', zh: '所有风格及示例回答' } },
  { command: 'reset', description: { en: 'Forget this conversation', zh: '忘掉当前对话' } },
  { command: 'help', description: { en: 'How to use this bot', zh: '使用说明' } },
];

/** setMyCommands calls: the default list (English) and one per other language, by language_code. */
export function commandMenus(): { languageCode?: string; commands: { command: string; description: string }[] }[] {
  const menu = (lang: Language) => MENU_COMMANDS.map((c) => ({ command: c.command, description: c.description[lang] }));
  return [{ commands: menu('en') }, { languageCode: 'en', commands: menu('en') }, { languageCode: 'zh', commands: menu('zh') }];
}
