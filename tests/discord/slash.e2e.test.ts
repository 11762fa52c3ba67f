// End to end through the real discord.js client against the fake Discord (REST + gateway), with
// the real core and the real engine on a tiny generated checkpoint: slash commands, the context
// menu, buttons, streaming, splitting, rate limits, queueing, limits, bad input, crashes, the
// 15-minute token and command registration.
import { messageText } from '../../src/engine/prompt.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { helpText } from '../../src/bot/commands.js';
import type { Engine, GenerateRequest, GenerationStream } from '../../src/engine/types.js';
import { openStyleRegistry } from '../../src/styles/registry.js';
import { FakeDiscord, type FakeInteraction } from '../support/fake-discord/index.js';
import { ScriptedEngine } from '../support/scripted-engine.js';
import {
  FIXTURE_PNG,
  finalReply,
  sleep,
  startBot,
  startEngine,
  tempDir,
  type EngineHandle,
  type RunningBot,
} from './harness.js';

const ORIGINAL = /^\/webhooks\/\d+\/[^/]+\/messages\/@original$/;
const strip = (text: string) => text.replace(/\s+/g, '');

let engine: EngineHandle;
let dir: string;
let cleanup: () => void;
let stylesFile: string;
let fake: FakeDiscord;
let bot: RunningBot | undefined;
let dbCount = 0;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir());
  // A style with long answers: enough tokens to stream for a few seconds and to pass Discord's
  // 2000-character limit (the talkative tiny model writes about one character per token).
  stylesFile = join(dir, 'styles.yaml');
  writeFileSync(
    stylesFile,
    [
      'styles:',
      '  - id: long',
      '    names: { en: Long, zh: 长 }',
      '    description: Long answers',
      '    systemPrompt: Answer at length.',
      '    generation: { maxNewTokens: 2600 }',
    ].join('\n'),
  );
  engine = await startEngine({ talkative: true });
});

afterAll(async () => {
  await engine?.close();
  cleanup?.();
});

afterEach(async () => {
  await bot?.stop();
  bot = undefined;
  await fake?.close();
});

function newDb(): string {
  dbCount += 1;
  return join(dir, `bot-${dbCount}.db`);
}

function picture(name = 'cat.png', delayMs = 0) {
  return fake.attachment({ filename: name, contentType: 'image/png', data: FIXTURE_PNG, width: 64, height: 48, delayMs });
}

async function start(options: Partial<Parameters<typeof startBot>[0]> = {}): Promise<RunningBot> {
  bot = await startBot({ fake, engine: engine.engine, dbPath: newDb(), stylesFile, ...options });
  return bot;
}

/** The turn the core stored for an answer message (it stores once every part is delivered). */
async function storedAnswer(channelId: string, messageId: string) {
  return fake.waitFor(() => bot!.store.findByMessage('discord', channelId, messageId)?.turns.at(-1), `the stored turn of ${messageId}`, 10_000);
}

/** No turn is ever stored for this message. */
async function nothingStored(channelId: string, messageId: string): Promise<boolean> {
  await sleep(300);
  return bot!.store.findByMessage('discord', channelId, messageId) === undefined;
}

/**
 * The real engine's stream, with its tail slowed down: past `afterChars` characters, deltas reach
 * the bot at most `charsPerSecond`. The tiny model writes 2000+ characters in a second or two, so
 * without this whether a streamed edit ever shows the "cut short" preview depends on the machine.
 */
function slowTail(inner: Engine, afterChars: number, charsPerSecond: number): Engine {
  return {
    get info() {
      return inner.info;
    },
    close: () => Promise.resolve(),
    generate(request: GenerateRequest, options?: { signal?: AbortSignal }): GenerationStream {
      const stream = inner.generate(request, options);
      return {
        result: stream.result,
        async *[Symbol.asyncIterator]() {
          let chars = 0;
          let slowSince = 0;
          for await (const delta of stream) {
            chars += delta.length;
            if (chars > afterChars) {
              slowSince ||= performance.now();
              const due = slowSince + ((chars - afterChars) * 1000) / charsPerSecond;
              const wait = due - performance.now();
              if (wait > 5) await new Promise((resolve) => setTimeout(resolve, wait));
            }
            yield delta;
          }
        },
      };
    },
  };
}

describe('discord /ask end to end', () => {
  it('defers at once, streams by edits about once a second, and splits a long final answer into follow-ups', async () => {
    fake = await FakeDiscord.start();
    // Past 1800 characters, 200 a second: the text crosses 2000 about a second in, with seconds
    // of streaming left, so some streamed edit must show the cut-short preview.
    await start({ engine: slowTail(engine.engine, 1800, 200) });
    const user = fake.createUser('alice');
    const interaction = fake.slashCommand('ask', { image: picture(), question: 'What is in it?', style: 'long' }, { user });
    const reply = await finalReply(fake, interaction, 120_000);

    // The first response is the deferral, well within Discord's 3 s.
    expect(interaction.callback?.type).toBe(5);
    expect(interaction.callback!.at - interaction.createdAt).toBeLessThan(3000);
    const calls = fake.calls.filter((c) => c.path.includes(interaction.token) || c.path.includes(`/interactions/${interaction.id}/`));
    expect(calls[0]!.path).toBe(`/interactions/${interaction.id}/${interaction.token}/callback`);

    // Streamed: several edits with a Cancel button and growing text before the final one.
    const original = reply.original!;
    const revisions = fake.revisionsOf(original.id);
    const streaming = revisions.filter((r) => r.components.length > 0 && r.content.length > 0);
    const partials = streaming.filter((r) => r.content !== t('en', 'thinking') && !r.content.startsWith('In the queue'));
    expect(partials.length).toBeGreaterThanOrEqual(2);
    expect(JSON.stringify(streaming[0]!.components)).toContain('vistyle:cancel:');

    // At most about one edit a second in the channel.
    const edits = fake.callsTo('PATCH', ORIGINAL).filter((c) => c.path.includes(interaction.token));
    // (Gaps are measured where the fake receives the edits, so network jitter shows in single ones.)
    const gaps = edits.slice(1).map((edit, i) => edit.at - edits[i]!.at);
    expect(gaps.length).toBeGreaterThanOrEqual(2);
    expect(Math.min(...gaps)).toBeGreaterThanOrEqual(500);
    expect(gaps.reduce((a, b) => a + b, 0) / gaps.length).toBeGreaterThanOrEqual(950);

    // The final answer: the stored answer, split at <= 2000 characters over the reply and follow-ups.
    const turn = await storedAnswer(interaction.channelId, original.id);
    expect(turn?.answer.length).toBeGreaterThan(2000);
    const followUps = interaction.followUpIds.map((id) => fake.message(interaction.channelId, id)!);
    const parts = [original, ...followUps].map((m) => m.content);
    expect(parts.length).toBeGreaterThanOrEqual(2);
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(2000);
    expect(strip(parts.join(''))).toBe(strip(turn!.answer));
    // Each streamed text was the answer so far (cut short with " …" once past one message).
    for (const partial of partials) expect(strip(turn!.answer).startsWith(strip(partial.content.replace(/ …$/, '')))).toBe(true);
    expect(partials.at(-1)!.content.endsWith(' …')).toBe(true);
    expect(original.components ?? []).toEqual([]);
    // Every part is linked: replying to a follow-up continues the same conversation.
    expect(bot!.store.findByMessage('discord', interaction.channelId, followUps.at(-1)!.id)?.id).toBe(
      bot!.store.findByMessage('discord', interaction.channelId, original.id)?.id,
    );

    // Structured logs, no secrets: neither the bot token nor the interaction token.
    const logs = bot!.logs.text();
    expect(logs).not.toContain(fake.token);
    expect(logs).not.toContain(interaction.token);
    expect(() => bot!.logs.records()).not.toThrow();
    expect(fake.unhandled).toEqual([]);
  }, 180_000);

  it('/style sets the style of the next answer, privately, and it survives a restart on the same database', async () => {
    fake = await FakeDiscord.start();
    const dbPath = newDb();
    // Global commands: guild commands are not offered in DMs.
    await start({ dbPath, guildId: null });
    const user = fake.createUser('bob');
    const dm = fake.dmChannel(user);

    const set = fake.slashCommand('style', { name: 'grumpy' }, { user, channel: dm });
    await fake.waitFor(() => set.callback, '/style reply');
    expect(set.callback!.type).toBe(4);
    expect(Number(set.callback!.data?.flags) & 64).toBe(64); // ephemeral
    const grumpy = bot!.core.listStyles({ user: { platform: 'discord', id: user.id }, chat: { platform: 'discord', id: dm.id, kind: 'private' } })
      .styles.find((s) => s.id === 'grumpy')!;
    expect(set.callback!.data?.content).toContain(grumpy.name);

    const ask = fake.slashCommand('ask', { image: picture() }, { user, channel: dm });
    const reply = await finalReply(fake, ask);
    expect((await storedAnswer(dm.id, reply.original!.id)).style).toBe('grumpy');

    // Restart everything but the database file.
    await bot!.stop();
    bot = undefined;
    await start({ dbPath, guildId: null });
    const show = fake.slashCommand('style', {}, { user, channel: dm });
    await fake.waitFor(() => show.callback, '/style reply after restart');
    expect(show.callback!.data?.content).toContain(grumpy.name);
    const again = fake.slashCommand('ask', { image: picture() }, { user, channel: dm });
    const second = await finalReply(fake, again);
    expect((await storedAnswer(dm.id, second.original!.id)).style).toBe('grumpy');
  }, 120_000);

  it('shows each waiting user their queue position as the queue moves, then answers everyone', async () => {
    fake = await FakeDiscord.start();
    await start();
    const [ann, ben, cat] = [fake.createUser('ann'), fake.createUser('ben'), fake.createUser('cat')];
    // Ann's picture downloads slowly, holding the engine's one slot.
    const first = fake.slashCommand('ask', { image: picture('slow.png', 3000) }, { user: ann });
    await fake.waitFor(() => first.callback, 'first deferral');
    await sleep(200);
    // Ben's picture is slower still, so after Ann's turn the queue stays put for a few seconds
    // (the lane shows the latest state of each message; a state that lasts less than the edit
    // gap may never be shown).
    const second = fake.slashCommand('ask', { image: picture('slower.png', 6000) }, { user: ben });
    await sleep(200);
    const third = fake.slashCommand('ask', { image: picture() }, { user: cat });

    const replies = await Promise.all([first, second, third].map((i) => finalReply(fake, i, 120_000)));
    for (const [index, reply] of replies.entries()) {
      const interaction = [first, second, third][index]!;
      expect((await storedAnswer(interaction.channelId, reply.original!.id)).answer).toBeTruthy();
    }
    const shown = (i: FakeInteraction) => fake.revisionsOf(i.originalMessageId!).map((r) => r.content);
    expect(shown(second)).toContain(t('en', 'queued', { position: 1 }));
    expect(shown(third)).toContain(t('en', 'queued', { position: 2 }));
    const thirdPositions = shown(third).filter((c) => c.startsWith('In the queue'));
    expect(thirdPositions.at(-1)).toBe(t('en', 'queued', { position: 1 }));
  }, 120_000);

  it("refuses one user's flood politely and privately, before acknowledging, and the refusal stays visible to them", async () => {
    fake = await FakeDiscord.start();
    await start({ limits: { userInFlight: 1, userPerMinute: 2 } });
    const user = fake.createUser('flooder');
    const bystander = fake.createUser('bystander');
    const first = fake.slashCommand('ask', { image: picture('slow.png', 1500) }, { user });
    await fake.waitFor(() => first.callback, 'first deferral');
    const second = fake.slashCommand('ask', { image: picture() }, { user });

    const refused = await finalReply(fake, second);
    // Decided from the interaction itself: the interaction's own reply, private, never deferred.
    // (A deferral followed by an ephemeral follow-up would fill the public deferred reply instead,
    // and removing that reply would remove the refusal: discord-api-docs#2742.)
    expect(second.callback?.type).toBe(4);
    expect(Number(second.callback?.data?.flags) & 64).toBe(64);
    expect(second.callback!.at - second.createdAt).toBeLessThan(3000);
    expect(refused.original!.content).toBe(t('en', 'rateLimitedInFlight'));

    const answered = await finalReply(fake, first);
    expect(await storedAnswer(first.channelId, answered.original!.id)).toBeTruthy();
    const third = fake.slashCommand('ask', { image: picture() }, { user });
    const thirdReply = await finalReply(fake, third);
    expect(await storedAnswer(third.channelId, thirdReply.original!.id)).toBeTruthy();

    const fourth = fake.slashCommand('ask', { image: picture() }, { user });
    const limited = await finalReply(fake, fourth);
    const perMinute = new RegExp(`^${t('en', 'rateLimitedPerMinute', { seconds: 'SECONDS' }).replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace('SECONDS', '\\d+')}$`);
    expect(limited.original!.content).toMatch(perMinute);
    expect(fourth.callback?.type).toBe(4);
    expect(limited.original!.flags! & 64).toBe(64);

    // At the end, both refusals are still there for the user who asked, and for nobody else;
    // the bot deleted nothing.
    await sleep(300);
    const seen = fake.visibleTo(user).map((m) => m.content);
    expect(seen).toContain(t('en', 'rateLimitedInFlight'));
    expect(seen.some((content) => perMinute.test(content))).toBe(true);
    const seenByOthers = fake.visibleTo(bystander).map((m) => m.content);
    expect(seenByOthers).not.toContain(t('en', 'rateLimitedInFlight'));
    expect(fake.calls.filter((c) => c.method === 'DELETE')).toEqual([]);
  }, 120_000);

  it('answers a text file, a 25 MB picture and a corrupt JPEG with clear messages', async () => {
    fake = await FakeDiscord.start();
    await start({ limits: { userPerMinute: 0 } });
    const user = fake.createUser('dora');

    // Refused from the attachment's metadata (content type, size): privately, before any
    // acknowledgement, and without downloading anything.
    const text = fake.attachment({ filename: 'notes.txt', contentType: 'text/plain; charset=utf-8', data: new TextEncoder().encode('hello') });
    const textAsk = fake.slashCommand('ask', { image: text }, { user });
    const textReply = await finalReply(fake, textAsk);
    expect(textReply.original!.content).toBe(t('en', 'error.IMAGE_UNSUPPORTED'));
    expect(textAsk.callback?.type).toBe(4);
    expect(textReply.original!.flags! & 64).toBe(64);

    const big = new Uint8Array(25 * 1024 * 1024);
    big.set(FIXTURE_PNG.subarray(0, 16));
    const huge = fake.attachment({ filename: 'huge.png', contentType: 'image/png', data: big, width: 8000, height: 8000 });
    const hugeAsk = fake.slashCommand('ask', { image: huge }, { user });
    const hugeReply = await finalReply(fake, hugeAsk);
    expect(hugeReply.original!.content).toBe(t('en', 'error.IMAGE_TOO_LARGE', { limit: '20 MB' }));
    expect(hugeAsk.callback?.type).toBe(4);
    expect(fake.cdnRequests.some((r) => r.path.includes('huge.png') || r.path.includes('notes.txt'))).toBe(false);

    // Found out only after downloading (the bytes do not decode): the deferred, public reply
    // becomes the message, and stays.
    const corrupt = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 1, 2, 3]);
    const broken = fake.attachment({ filename: 'broken.jpg', contentType: 'image/jpeg', data: corrupt });
    const brokenAsk = fake.slashCommand('ask', { image: broken }, { user });
    const brokenReply = await finalReply(fake, brokenAsk);
    expect(brokenAsk.callback?.type).toBe(5);
    expect(brokenReply.original!.content).toBe(t('en', 'error.IMAGE_CORRUPT'));
    expect(brokenReply.original!.flags ?? 0).toBe(0);
    await sleep(300);
    expect(fake.visibleTo(fake.createUser('anyone')).map((m) => m.id)).toContain(brokenReply.original!.id);
    expect(fake.calls.filter((c) => c.method === 'DELETE')).toEqual([]);
  }, 120_000);

  it('never sends control characters, and says something polite for an answer that is only control characters', async () => {
    fake = await FakeDiscord.start();
    const scripted = new ScriptedEngine((request) => (messageText(request.messages.at(-1)!) === 'blank?' ? '\u0000\u0001\n\u0007 ' : 'A \u0000cat\u0007 on a\r\nsofa.\u009b'), 150, 5);
    await start({ engine: scripted });
    const user = fake.createUser('cora');
    const reply = await finalReply(fake, fake.slashCommand('ask', { image: picture(), question: 'what?' }, { user }));
    expect(reply.original!.content).toBe('A cat on a\nsofa.');
    const written = fake.calls.filter((c) => c.method === 'PATCH' || c.method === 'POST').map((c) => (c.body as { content?: string } | undefined)?.content ?? '');
    for (const content of written) expect(content).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    const blank = await finalReply(fake, fake.slashCommand('ask', { image: picture(), question: 'blank?' }, { user }));
    expect(blank.original!.content).toBe(t('en', 'emptyAnswer'));
  });

  it('retries an edit answered with 429 after retry_after and loses nothing', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('erin');
    // The final edit (no Cancel button any more) gets a 429 asking for 2 s.
    const rule = fake.rateLimit({
      method: 'PATCH',
      path: ORIGINAL,
      retryAfter: 2,
      when: (body) => Array.isArray((body as { components?: unknown[] }).components) && (body as { components: unknown[] }).components.length === 0,
    });
    const interaction = fake.slashCommand('ask', { image: picture() }, { user });
    const reply = await finalReply(fake, interaction);

    expect(rule.hits).toBe(1);
    const edits = fake.callsTo('PATCH', ORIGINAL).filter((c) => c.path.includes(interaction.token));
    const limited = edits.findIndex((c) => c.rateLimited);
    const retry = edits[limited + 1]!;
    expect(retry.status).toBe(200);
    expect(retry.at - edits[limited]!.at).toBeGreaterThanOrEqual(2000);
    expect((retry.body as { content: string }).content).toBe((edits[limited]!.body as { content: string }).content);
    expect(reply.original!.content).toBe((await storedAnswer(interaction.channelId, reply.original!.id)).answer);
  }, 60_000);

  it('lets only the asker cancel with the button; a cancelled request says so and never runs', async () => {
    fake = await FakeDiscord.start();
    await start();
    const [holder, asker, other] = [fake.createUser('holder'), fake.createUser('asker'), fake.createUser('other')];
    const first = fake.slashCommand('ask', { image: picture('slow.png', 2500) }, { user: holder });
    await fake.waitFor(() => first.callback, 'first deferral');
    const second = fake.slashCommand('ask', { image: picture() }, { user: asker });
    const queuedMessage = await fake.waitFor(() => {
      const message = second.originalMessageId ? fake.message(second.channelId, second.originalMessageId) : undefined;
      return message && JSON.stringify(message.components ?? []).includes('vistyle:cancel:') ? message : undefined;
    }, 'the Cancel button');
    const customId = JSON.stringify(queuedMessage.components).match(/vistyle:cancel:[\w-]+/)![0];

    const notYours = fake.clickButton(queuedMessage, customId, { user: other });
    await fake.waitFor(() => notYours.callback, 'refusal');
    expect(notYours.callback!.data?.content).toBe(t('en', 'cancelNotYours'));
    expect(Number(notYours.callback!.data?.flags) & 64).toBe(64);

    const mine = fake.clickButton(queuedMessage, customId, { user: asker });
    const reply = await finalReply(fake, second);
    expect(mine.callback?.type).toBe(6);
    expect(reply.original!.content).toBe(t('en', 'error.CANCELLED'));
    const firstReply = await finalReply(fake, first);
    await storedAnswer(first.channelId, firstReply.original!.id);
    expect(bot!.store.latest('discord', second.channelId)?.userId).toBe(holder.id);
    expect(await nothingStored(second.channelId, reply.original!.id)).toBe(true);
  }, 60_000);

  it('delivers an answer that would outlive the interaction token as a channel message', async () => {
    fake = await FakeDiscord.start({ interactionTokenLifetimeMs: 5000 });
    await start({ extras: { interactionTokenLifetimeMs: 5000, handoffMarginMs: 2500 } });
    const [holder, waiter] = [fake.createUser('holder'), fake.createUser('waiter')];
    const first = fake.slashCommand('ask', { image: picture('slow.png', 7000) }, { user: holder });
    await fake.waitFor(() => first.callback, 'first deferral');
    const second = fake.slashCommand('ask', { image: picture() }, { user: waiter });

    const answer = await fake.waitFor(() => {
      const message = fake
        .messages(second.channelId)
        .find((m) => m.author.id === fake.botUser.id && !m.webhook_id && m.content.startsWith(`<@${waiter.id}>`));
      return message && (message.components ?? []).length === 0 && !message.content.includes(t('en', 'queued', { position: 1 })) ? message : undefined;
    }, 'the channel answer', 60_000);

    // The interaction reply was told where the answer goes, before its token expired.
    const original = fake.message(second.channelId, second.originalMessageId!)!;
    expect(original.content).not.toContain(t('en', 'queued', { position: 1 }));
    expect(original.components ?? []).toEqual([]);
    // No write with a dead token: every webhook call for this interaction succeeded.
    const webhookCalls = fake.calls.filter((c) => c.path.includes(second.token));
    expect(webhookCalls.every((c) => c.status < 400)).toBe(true);
    expect(webhookCalls.every((c) => c.at - second.createdAt < 5000)).toBe(true);
    // The channel message mentions the asker and carries the stored answer.
    const post = fake.callsTo('POST', /^\/channels\/\d+\/messages$/).find((c) => (c.body as { content?: string }).content?.startsWith(`<@${waiter.id}>`));
    expect((post!.body as { allowed_mentions: { users: string[]; parse: string[] } }).allowed_mentions).toMatchObject({ users: [waiter.id], parse: [] });
    const turn = await storedAnswer(second.channelId, answer.id);
    expect(answer.content).toBe(`<@${waiter.id}> ${turn!.answer}`);
  }, 90_000);

  it('tells the user when the engine worker crashes mid-answer, restarts it, and answers the next request', async () => {
    const crashing = await startEngine({ debugCrashAfterTokens: 5, talkative: true });
    try {
      fake = await FakeDiscord.start();
      bot = await startBot({ fake, engine: crashing.engine, dbPath: newDb(), stylesFile });
      const user = fake.createUser('fay');
      const crashed = await finalReply(fake, fake.slashCommand('ask', { image: picture(), style: 'long' }, { user }));
      expect(crashed.original!.content).toBe(t('en', 'error.ENGINE_CRASHED'));
      const next = fake.slashCommand('ask', { image: picture() }, { user });
      const answered = await finalReply(fake, next, 60_000);
      expect((await storedAnswer(next.channelId, answered.original!.id)).answer).toBe(answered.original!.content);
      expect(crashing.starts()).toBe(2);
    } finally {
      await bot?.stop();
      bot = undefined;
      await crashing.close();
    }
  }, 120_000);
});

describe('discord commands and settings', () => {
  it('registers the commands once, with localizations and style choices, and not again on a restart with the same definitions', async () => {
    fake = await FakeDiscord.start();
    const dbPath = newDb();
    await start({ dbPath });
    expect(fake.commandWrites().map((c) => `${c.method} ${c.path}`)).toEqual([
      `PUT /applications/${fake.applicationId}/guilds/${fake.guildId}/commands`,
    ]);
    const commands = fake.registeredCommands(fake.guildId);
    expect(commands.map((c) => c.name).sort()).toEqual(['Ask about this image', 'ask', 'help', 'language', 'queue', 'reload', 'reset', 'style', 'styles']);
    const ask = commands.find((c) => c.name === 'ask')!;
    expect(ask.description_localizations).toMatchObject({ 'zh-CN': expect.any(String), 'zh-TW': expect.any(String) });
    const styleOption = (ask.options as { name: string; choices?: { value: string }[] }[]).find((o) => o.name === 'style')!;
    expect(styleOption.choices!.map((c) => c.value)).toEqual(bot!.core.listStyles({
      user: { platform: 'discord', id: '1' },
      chat: { platform: 'discord', id: '1', kind: 'private' },
    }).styles.map((s) => s.id));
    const menu = commands.find((c) => c.type === 3)!;
    expect(menu.name_localizations).toMatchObject({ 'zh-CN': expect.any(String) });

    await bot!.stop();
    bot = undefined;
    await start({ dbPath });
    expect(fake.commandWrites()).toHaveLength(1);

    // Different definitions (another styles file) are written again.
    await bot!.stop();
    bot = undefined;
    const otherStyles = join(dir, 'other-styles.yaml');
    writeFileSync(otherStyles, 'styles:\n  - id: pirate\n    names: { en: Pirate, zh: 海盗 }\n    description: Arr\n    systemPrompt: Talk like a pirate.\n');
    await start({ dbPath, stylesFile: otherStyles });
    expect(fake.commandWrites()).toHaveLength(2);
  }, 60_000);

  it('registers the commands again when the styles file is reloaded with other styles', async () => {
    fake = await FakeDiscord.start();
    const file = join(dir, 'reloaded-styles.yaml');
    writeFileSync(file, 'styles: []\n');
    const styles = openStyleRegistry({ file, watch: false });
    try {
      await start({ styles });
      expect(fake.commandWrites()).toHaveLength(1);
      writeFileSync(file, 'styles:\n  - id: poet\n    names: { en: Poet, zh: 诗人 }\n    description: Rhymes\n    systemPrompt: Answer in verse.\n');
      expect(styles.reload().ok).toBe(true);
      await fake.waitFor(() => fake.commandWrites().length === 2, 'the second registration');
      const ask = fake.registeredCommands(fake.guildId).find((c) => c.name === 'ask')!;
      const choices = (ask.options as { name: string; choices?: { value: string }[] }[]).find((o) => o.name === 'style')!.choices!;
      expect(choices.map((c) => c.value)).toContain('poet');
    } finally {
      styles.close();
    }
  });

  it('/reload re-reads the styles file for admins only', async () => {
    fake = await FakeDiscord.start();
    const file = join(dir, 'admin-reload-styles.yaml');
    writeFileSync(file, 'styles: []\n');
    const styles = openStyleRegistry({ file, watch: false });
    const admin = fake.createUser('root');
    const user = fake.createUser('rita');
    try {
      await start({ styles, adminIds: [admin.id] });
      writeFileSync(file, 'styles:\n  - id: poet\n    names: { en: Poet, zh: 诗人 }\n    description: Rhymes\n    systemPrompt: Answer in verse.\n');

      const refused = fake.slashCommand('reload', {}, { user });
      await fake.waitFor(() => refused.callback, '/reload reply to a user');
      expect(refused.callback!.data?.content).toBe(t('en', 'adminOnly'));
      expect(styles.get('poet')).toBeUndefined();

      const reloaded = fake.slashCommand('reload', {}, { user: admin });
      await fake.waitFor(() => reloaded.callback, '/reload reply to an admin');
      expect(Number(reloaded.callback!.data?.flags) & 64).toBe(64);
      expect(styles.get('poet')?.systemPrompt).toBe('Answer in verse.');
      const listed = fake.slashCommand('styles', {}, { user });
      await fake.waitFor(() => listed.callback, '/styles after the reload');
      expect(listed.callback!.data?.content).toContain('(poet)');
    } finally {
      styles.close();
    }
  });

  it('registers globally without DISCORD_GUILD_ID', async () => {
    fake = await FakeDiscord.start();
    await start({ guildId: null });
    expect(fake.commandWrites().map((c) => `${c.method} ${c.path}`)).toEqual([`PUT /applications/${fake.applicationId}/commands`]);
    expect(fake.registeredCommands(null).length).toBe(9);
  });

  it('answers settings commands privately, in the language of the interaction', async () => {
    fake = await FakeDiscord.start();
    const admin = fake.createUser('admin');
    await start({ adminIds: [admin.id] });
    const user = fake.createUser('gao');

    const help = fake.slashCommand('help', {}, { user, locale: 'zh-CN' });
    await fake.waitFor(() => help.callback, '/help reply');
    expect(help.callback!.data?.content).toBe(helpText('zh', { platform: 'discord', admin: false }));
    expect(Number(help.callback!.data?.flags) & 64).toBe(64);

    const styles = fake.slashCommand('styles', {}, { user, locale: 'en-US' });
    await fake.waitFor(() => styles.callback, '/styles reply');
    for (const id of ['plain', 'grumpy', 'cantonese', 'salesman', 'long']) expect(styles.callback!.data?.content).toContain(`(${id})`);

    const queue = fake.slashCommand('queue', {}, { user });
    await fake.waitFor(() => queue.callback, '/queue reply');
    expect(queue.callback!.data?.content).toBe(t('en', 'adminOnly'));
    const adminQueue = fake.slashCommand('queue', {}, { user: admin });
    await fake.waitFor(() => adminQueue.callback, '/queue admin reply');
    expect(adminQueue.callback!.data?.content).toMatch(/^Queue: 0 waiting/);

    const reset = fake.slashCommand('reset', {}, { user });
    await fake.waitFor(() => reset.callback, '/reset reply');
    expect(reset.callback!.data?.content).toBe(t('en', 'resetNothing'));

    // /language exists on Discord too (the core's command table): a saved choice beats the locale.
    const language = fake.slashCommand('language', { language: 'zh' }, { user, locale: 'en-US' });
    await fake.waitFor(() => language.callback, '/language reply');
    expect(language.callback!.data?.content).toBe(t('zh', 'languageSet'));
    expect(Number(language.callback!.data?.flags) & 64).toBe(64);
    const helpAfter = fake.slashCommand('help', {}, { user, locale: 'en-US' });
    await fake.waitFor(() => helpAfter.callback, '/help after /language');
    expect(helpAfter.callback!.data?.content).toBe(helpText('zh', { platform: 'discord', admin: false }));
    expect(String(helpAfter.callback!.data?.content)).toContain('/language');
  });

  it('continues a settings reply longer than 2000 characters in private follow-ups', async () => {
    fake = await FakeDiscord.start();
    const many = join(dir, 'many-styles.yaml');
    const entries = Array.from({ length: 12 }, (_, i) =>
      [
        `  - id: voice${i}`,
        `    names: { en: Voice ${i}, zh: 声音${i} }`,
        `    description: Voice number ${i}`,
        '    systemPrompt: Speak.',
        `    sampleAnswer: ${'A sample sentence of this voice. '.repeat(6).trim()}`,
      ].join('\n'),
    );
    writeFileSync(many, ['styles:', ...entries].join('\n'));
    await start({ stylesFile: many });
    const user = fake.createUser('quinn');
    const styles = fake.slashCommand('styles', {}, { user });
    const shown = () => [String(styles.callback?.data?.content ?? ''), ...styles.followUpIds.map((id) => fake.message(styles.channelId, id)!.content)];
    await fake.waitFor(() => shown().join('\n').includes('(voice11)'), 'every style in the reply and its follow-ups');
    const parts = shown();
    expect(parts.length).toBeGreaterThanOrEqual(2);
    for (const part of parts) expect(part.length).toBeLessThanOrEqual(2000);
    for (let i = 0; i < 12; i++) expect(parts.join('\n')).toContain(`(voice${i})`);
    for (const id of styles.followUpIds) expect(fake.message(styles.channelId, id)!.flags! & 64).toBe(64);
  });

  it('answers "Ask about this image" on a message with a picture', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('hana');
    const photo = fake.userMessage({ user, content: 'look at this', attachments: [picture('photo.png')] });
    const interaction = fake.messageCommand('Ask about this image', photo, { user, locale: 'zh-CN' });
    const reply = await finalReply(fake, interaction);
    const conversation = await fake.waitFor(() => bot!.store.findByMessage('discord', interaction.channelId, reply.original!.id), 'the stored turn');
    expect(conversation?.turns[0]?.answer).toBe(reply.original!.content);
    // Asked the style's default question in the user's language, linked to the photo message too.
    expect(conversation?.turns[0]?.question).toBe(bot!.core.resolveStyle({ platform: 'discord', id: user.id }, { platform: 'discord', id: interaction.channelId, kind: 'group' }).style.defaultQuestion.zh);
    expect(bot!.store.findByMessage('discord', interaction.channelId, photo.id)?.id).toBe(conversation!.id);
  });

  it('refuses "Ask about this image" on a message without a usable picture privately, before acknowledging', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('ines');
    const notes = fake.attachment({ filename: 'notes.pdf', contentType: 'application/pdf', data: new TextEncoder().encode('%PDF-1.4') });
    const message = fake.userMessage({ user, content: 'my notes', attachments: [notes] });
    const interaction = fake.messageCommand('Ask about this image', message, { user });
    const reply = await finalReply(fake, interaction);
    expect(interaction.callback?.type).toBe(4);
    expect(Number(interaction.callback?.data?.flags) & 64).toBe(64);
    expect(reply.original!.content).toBe(t('en', 'error.IMAGE_UNSUPPORTED'));
    expect(fake.visibleTo(user).map((m) => m.id)).toContain(reply.original!.id);
    expect(fake.visibleTo(fake.createUser('other')).map((m) => m.id)).not.toContain(reply.original!.id);
  });

  it('connects to the configured gateway URL instead of the one the REST API reports', async () => {
    fake = await FakeDiscord.start();
    fake.advertisedGatewayUrl = 'ws://127.0.0.1:9';
    await start({ extras: { gatewayUrl: fake.gatewayUrl } });
    expect(fake.gateway.identifies).toHaveLength(1);
  });
});
