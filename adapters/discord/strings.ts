// The few texts only the Discord adapter shows (everything shared comes from the core's t()).
import type { Language, LocalizedText } from '../../src/styles/types.js';

const STRINGS = {
  movedToChannel: {
    en: 'This is taking a while — I will post the answer in this channel and mention you when it is ready.',
    zh: '需要的时间有点长——答案准备好后，我会在这个频道里发出来并提醒你。',
  },
  commandFailed: {
    en: 'Sorry, something went wrong on my side. Please try again.',
    zh: '抱歉，我这边出了点问题，请再试一次。',
  },
} satisfies Record<string, LocalizedText>;

export type DiscordStringKey = keyof typeof STRINGS;

export function discordText(lang: Language, key: DiscordStringKey): string {
  return STRINGS[key][lang];
}
