// Runs a FakeTelegram in a worker thread, so that a test measuring the bot's main thread (the load
// test's event-loop delay) does not also measure the fake server's work. Driven by remote.ts.
import { parentPort, workerData } from 'node:worker_threads';
import { FakeTelegram, type FakeTelegramOptions } from './server.js';
import type { BotMessageState } from './types.js';

interface Call {
  id: number;
  method: string;
  args: unknown[];
}

/** Structured cloning turns Buffers into plain Uint8Arrays; the fake wants Buffers back. */
function revive(value: unknown): unknown {
  if (value instanceof Uint8Array && !Buffer.isBuffer(value)) return Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  if (Array.isArray(value)) return value.map(revive);
  if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, revive(item)]));
  }
  return value;
}

const fake = await FakeTelegram.start(workerData as FakeTelegramOptions);
const port = parentPort!;

/** The bot's settled replies to each message (see tests/telegram/harness.ts settledReplies). */
function settled(fakeServer: FakeTelegram, target: { chatId: number; messageId: number }): BotMessageState[] | undefined {
  const replies = fakeServer.visibleMessagesIn(target.chatId).filter((message) => message.replyToMessageId === target.messageId);
  return replies.length > 0 && replies.every((message) => !message.replyMarkup) ? replies : undefined;
}

const extra: Record<string, (...args: never[]) => unknown> = {
  waitSettled: (targets: { chatId: number; messageId: number }[], timeoutMs: number) =>
    fake.waitFor(
      () => {
        const all = targets.map((target) => settled(fake, target));
        return all.every((replies) => replies !== undefined) ? all : undefined;
      },
      timeoutMs,
      `settled replies to ${targets.length} messages`,
    ),
  callsSince: (index: number) => fake.calls.slice(index),
  callCount: () => fake.calls.length,
  floodViolations: () => fake.floodViolations,
};

port.on('message', async (call: Call) => {
  try {
    const own = extra[call.method];
    const method = (fake as unknown as Record<string, unknown>)[call.method];
    let result: unknown;
    if (own) result = await (own as (...args: unknown[]) => unknown)(...call.args);
    else if (typeof method === 'function') result = await (method as (...args: unknown[]) => unknown).apply(fake, call.args.map(revive));
    else throw new Error(`fake Telegram has no method ${call.method}`);
    port.postMessage({ id: call.id, result });
  } catch (error) {
    port.postMessage({ id: call.id, error: error instanceof Error ? error.message : String(error) });
  }
});

port.postMessage({ ready: true, apiRoot: fake.apiRoot, token: fake.token, botUser: fake.botUser });
