// The Telegram adapter (telegraf): createTelegramAdapter() is what `vistyle start` runs when
// TELEGRAM_BOT_TOKEN is set. See docs/telegram.md.
import type { PlatformAdapter } from '../../src/bot/types.js';
import { TelegramAdapter, type CreateTelegramAdapterOptions } from './adapter.js';

export { TelegramAdapter } from './adapter.js';
export type { CreateTelegramAdapterOptions, TelegramAdapterTuning } from './adapter.js';
export { markdownToTelegramHtml } from './format.js';

export function createTelegramAdapter(options: CreateTelegramAdapterOptions): PlatformAdapter {
  return new TelegramAdapter(options);
}
