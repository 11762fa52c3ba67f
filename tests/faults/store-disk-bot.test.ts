// The running bot with its database on a small tmpfs that fills up: photos are still answered,
// /style is refused with a polite message (and the old style kept), the refusal shows on
// /metrics, and once space is freed settings and conversations are saved again.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { expect } from 'vitest';
import { metric, metricsPort, PNG, startBotProcess, type BotProcess } from './support/bot-process.js';
import { itWithMount, mountTmpfs } from './support/tmpfs.js';

/** The bot's newest message in the chat; for an answer, once it is settled (no cancel button left). */
async function lastReply(bot: BotProcess, chatId: number, after: number, answer = false): Promise<string> {
  const message = await bot.fake.waitFor(
    () => {
      const messages = bot.fake.visibleMessagesIn(chatId);
      const last = messages.at(-1);
      return messages.length > after && last && !(answer && last.replyMarkup) ? last : undefined;
    },
    60_000,
    'a settled reply',
  );
  return message.text;
}

itWithMount('a full disk under the store: answers go on, settings are refused politely, writes resume when space returns', async () => {
  const tmpfs = mountTmpfs(2 * 1024 * 1024);
  let bot: BotProcess | undefined;
  try {
    bot = await startBotProcess({ env: { VISTYLE_DB_PATH: join(tmpfs.dir, 'vistyle.db'), VISTYLE_METRICS_PORT: '0' } });
    const port = metricsPort(bot.output());
    const alice = bot.fake.user(1001, { language_code: 'en' });
    const seen = () => bot!.fake.visibleMessagesIn(alice.id).length;

    let count = seen();
    bot.fake.sendCommand(alice, '/style grumpy');
    expect(await lastReply(bot, alice.id, count)).toMatch(/Your style is now/);

    const free = tmpfs.fill();
    // a photo is still answered
    count = seen();
    await bot.fake.sendPhoto(alice, PNG, { caption: 'what is this?' });
    expect(await lastReply(bot, alice.id, count, true)).not.toMatch(/went wrong/);
    await bot.waitForOutput('"msg":"request answered"');
    // a settings change is refused with a message that says so, and the old style stays
    count = seen();
    bot.fake.sendCommand(alice, '/style salesman');
    expect(await lastReply(bot, alice.id, count)).toMatch(/cannot save changes right now.*Nothing was changed/);
    count = seen();
    bot.fake.sendCommand(alice, '/style');
    expect(await lastReply(bot, alice.id, count)).toMatch(/Grumpy/i);
    expect(await metric(port, 'vistyle_store_writable')).toBe(0);
    expect(await metric(port, 'vistyle_store_writes_refused_total')).toBeGreaterThanOrEqual(1);
    expect(bot.output().match(/the database cannot be written \(the disk is full\)/g)).toHaveLength(1);

    free();
    count = seen();
    bot.fake.sendCommand(alice, '/style salesman');
    expect(await lastReply(bot, alice.id, count)).toMatch(/Your style is now/);
    expect(await metric(port, 'vistyle_store_writable')).toBe(1);
    await bot.waitForOutput('the database takes writes again');

    bot.child.kill('SIGTERM');
    expect(await bot.exited).toEqual({ code: 0, signal: null });
  } finally {
    await bot?.cleanup();
    rmSync(join(tmpfs.dir, 'vistyle.db'), { force: true });
    tmpfs.unmount();
  }
}, 180_000);
