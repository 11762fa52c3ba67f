// The one text only the Discord adapter writes itself (everything else comes finished from the
// core), in the request's language (AskTicket.language).
import type { Language, LocalizedText } from '../../src/styles/types.js';

const STRINGS = {
  movedToChannel: {
    en: 'This is taking a while — I will post the answer in this channel and mention you when it is ready.',
    zh: '需要的时间有点长——答案准备好后，我会在这个频道里发出来并提醒你。',
  },
} satisfies Record<string, LocalizedText>;

export type DiscordStringKey = keyof typeof STRINGS;

export function discordText(lang: Language, key: DiscordStringKey): string {
  return STRINGS[key][lang];
}
