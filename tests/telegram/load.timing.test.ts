// Load: 200 requests from 50 users in one burst against the fake Bot API, through real telegraf,
// the real core and the real engine worker on a tiny model. Every request must end in an answer or
// a polite refusal (counted from the calls the fake recorded), none lost, nothing sent faster than
// Telegram allows, and the main thread's event loop must stay responsive (p99 delay under a
// generous bound). The fake runs in its own worker thread so that the measured main thread does
// what a deployed bot's does: telegraf, the adapter, the core and the engine client. The figures
// are printed and, with VISTYLE_BENCH_OUT=<file>, written as JSON for bench/RESULTS.md.
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { afterAll, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { createEngine } from '../../src/engine/engine.js';
import { RemoteFakeTelegram, type BotMessageState, type FakeMessage, type FakeUser } from '../support/fake-telegram/index.js';
import { tinyModel } from '../support/tiny-model.js';
import { ObservedEngine, startBot, tempDir, visibleCore } from './harness.js';

const USERS = 50;
const PER_USER = 4;
const MAX_QUEUE = 30;
const TEXT_METHODS = ['sendMessage', 'editMessageText', 'sendMessageDraft'];
const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));
const temp = tempDir();
afterAll(() => temp.remove());

it('answers or politely refuses every one of 200 requests from 50 users in a burst', async () => {
  const { modelDir } = await tinyModel();
  const engine = await createEngine({ modelDir, threads: 1 });
  const observed = new ObservedEngine(engine);
  const fake = await RemoteFakeTelegram.start();
  const bot = await startBot({
    fake,
    engine: observed,
    dbPath: join(temp.dir, 'load.db'),
    env: { VISTYLE_MAX_QUEUE: String(MAX_QUEUE), VISTYLE_USER_IN_FLIGHT: '1', VISTYLE_USER_PER_MINUTE: '6' },
  });
  try {
    const users: FakeUser[] = [];
    for (let i = 0; i < USERS; i++) users.push(await fake.call<FakeUser>('user', 300_000 + i, { language_code: i % 2 ? 'en' : 'zh' }));
    const target = (message: FakeMessage) => ({ chatId: message.chat.id, messageId: message.message_id });
    const warmUp = await fake.call<FakeMessage>('sendPhoto', users[0], PNG, { caption: 'warm-up' });
    await fake.waitSettled([target(warmUp)], 60_000);
    observed.calls.length = 0;
    const callsBefore = await fake.call<number>('callCount');
    // when the adapter starts each Bot API call (what arrives at the fake also includes the time
    // the client takes to open connections during the burst)
    const started: { method: string; chatId: number; at: number }[] = [];
    const telegram = bot.adapter.bot.telegram as unknown as { callApi: (method: string, payload: Record<string, unknown>, options?: unknown) => Promise<unknown> };
    const callApi = telegram.callApi.bind(telegram);
    telegram.callApi = (method, payload, options) => {
      started.push({ method, chatId: Number(payload.chat_id), at: performance.now() });
      return callApi(method, payload, options);
    };

    const histogram = monitorEventLoopDelay({ resolution: 10 });
    histogram.enable();
    const burstStart = performance.now();
    const sent: FakeMessage[] = [];
    // the burst: every user's first photo, then every user's second, ...
    for (let round = 0; round < PER_USER; round++) {
      for (const user of users) sent.push(await fake.call<FakeMessage>('sendPhoto', user, PNG, { caption: `question ${round + 1}` }));
    }
    const settled: BotMessageState[][] = await fake.waitSettled(sent.map(target), 170_000);
    const elapsedMs = performance.now() - burstStart;
    histogram.disable();

    // classify every request by what its user was finally shown
    const answers = new Set(observed.answers().map(visibleCore));
    const refusals = new Map<string, RegExp>([
      ['in-flight', new RegExp(`^(${escape(t('en', 'rateLimitedInFlight'))}|${escape(t('zh', 'rateLimitedInFlight'))})$`)],
      ['queue-full', new RegExp(`^(${pattern(t('en', 'error.QUEUE_FULL'))}|${pattern(t('zh', 'error.QUEUE_FULL'))})$`)],
      ['per-minute', new RegExp(`^(${pattern(t('en', 'rateLimitedPerMinute'))}|${pattern(t('zh', 'rateLimitedPerMinute'))})$`)],
    ]);
    const outcomes: Record<string, number> = { answered: 0, 'in-flight': 0, 'queue-full': 0, 'per-minute': 0, other: 0 };
    const others: string[] = [];
    for (const replies of settled) {
      const text = replies.map((m) => m.text).join('\n');
      if (answers.has(visibleCore(text))) outcomes.answered! += 1;
      else {
        const kind = [...refusals].find(([, re]) => re.test(text))?.[0];
        if (kind) outcomes[kind]! += 1;
        else {
          outcomes.other! += 1;
          others.push(text);
        }
      }
    }

    // pacing: the adapter never started two text calls in one chat less than a second apart
    const minGap = (calls: { method: string; chatId: number; at: number }[]) => {
      const byChat = new Map<number, number[]>();
      for (const call of calls.filter((c) => TEXT_METHODS.includes(c.method))) byChat.set(call.chatId, [...(byChat.get(call.chatId) ?? []), call.at]);
      return Math.min(...[...byChat.values()].flatMap((times) => times.slice(1).map((time, i) => time - times[i]!)));
    };
    const recorded = await fake.callsSince(callsBefore);
    const textCalls = recorded.filter((c) => TEXT_METHODS.includes(c.method));
    const minGapStartedMs = minGap(started);
    const minGapArrivedMs = minGap(textCalls.map((c) => ({ method: c.method, chatId: Number(c.params.chat_id), at: c.at })));
    const floodViolations = await fake.call<unknown[]>('floodViolations');
    // and never more than ~30 text calls in any second across all chats (Telegram's bot-wide limit)
    const textStarts = started.filter((c) => TEXT_METHODS.includes(c.method)).map((c) => c.at);
    let busiestSecond = 0;
    for (let i = 0, j = 0; i < textStarts.length; i++) {
      while (textStarts[i]! - textStarts[j]! >= 1000) j++;
      busiestSecond = Math.max(busiestSecond, i - j + 1);
    }

    const figures = {
      requests: sent.length,
      users: USERS,
      outcomes,
      engineRuns: observed.calls.length,
      elapsedMs: Math.round(elapsedMs),
      eventLoopDelayMs: {
        p50: round(histogram.percentile(50) / 1e6),
        p99: round(histogram.percentile(99) / 1e6),
        max: round(histogram.max / 1e6),
      },
      botApiCalls: recorded.length,
      textCalls: textCalls.length,
      minGapBetweenTextCallsInAChatMs: { startedByAdapter: Math.round(minGapStartedMs), arrivedAtFake: Math.round(minGapArrivedMs) },
      mostTextCallsInOneSecond: busiestSecond,
      floodViolations: floodViolations.length,
      machine: { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    };
    console.log(JSON.stringify(figures, null, 2));
    if (process.env.VISTYLE_BENCH_OUT) writeFileSync(process.env.VISTYLE_BENCH_OUT, JSON.stringify(figures, null, 2));

    expect(others).toEqual([]);
    expect(outcomes.answered! + outcomes['in-flight']! + outcomes['queue-full']! + outcomes['per-minute']!).toBe(200);
    expect(outcomes.answered).toBe(observed.calls.length);
    expect(outcomes.answered).toBeGreaterThanOrEqual(MAX_QUEUE);
    expect(outcomes['in-flight']).toBeGreaterThan(0);
    expect(floodViolations).toEqual([]);
    expect(minGapStartedMs).toBeGreaterThanOrEqual(980); // 1 s, less timer granularity
    expect(busiestSecond).toBeLessThanOrEqual(31);
    expect(figures.eventLoopDelayMs.p99).toBeLessThan(50);
  } finally {
    await bot.stop();
    await fake.close();
    await engine.close();
  }
}, 240_000);

function escape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A localised template with its {params} as wildcards. */
function pattern(template: string): string {
  return escape(template).replace(/\\\{\w+\\\}/g, '.+?');
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}
