import { Writable } from 'node:stream';
import { pino } from 'pino';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createBotCore } from '../../src/bot/core.js';
import { errorMessage, t } from '../../src/bot/i18n.js';
import { helpText } from '../../src/bot/commands.js';
import type { AskOutcome, AskTicket, BotRequest } from '../../src/bot/types.js';
import { VistyleError } from '../../src/errors.js';
import { messageImages, messageText } from '../../src/engine/prompt.js';
import { registerSecret } from '../../src/log.js';
import { Store } from '../../src/store/store.js';
import { builtinStyleRegistry } from '../../src/styles/registry.js';
import { FakeEngine } from './support/fake-engine.js';
import {
  coreConfig,
  groupChat,
  imageSource,
  makeHarness,
  photoRequest,
  PNG_BYTES,
  PNG_BYTES_2,
  privateChat,
  RecordingSink,
  user,
  type Harness,
} from './support/harness.js';

const registry = builtinStyleRegistry();
const style = (id: string) => registry.get(id)!;

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

function setup(engine = new FakeEngine(), config = coreConfig()) {
  harness = makeHarness(engine, { config });
  return { engine, core: harness.core };
}

async function ask(request: BotRequest, sink = new RecordingSink()): Promise<{ sink: RecordingSink; outcome: AskOutcome; requestId: string }> {
  const ticket = harness!.core.ask(request, sink);
  const outcome = await ticket.done;
  return { sink, outcome, requestId: ticket.requestId };
}

const lastUserText = (engine: FakeEngine, index = engine.generations.length - 1) => {
  const messages = engine.generations[index]!.request.messages;
  return messageText(messages[messages.length - 1]!);
};

describe('bot core: asking', () => {
  it('asks the style default question for a photo without one, in the user language, and streams the answer', async () => {
    const { engine } = setup();
    const { sink, outcome } = await ask(photoRequest('1'));
    expect(outcome.status).toBe('answered');
    const request = engine.generations[0]!.request;
    expect(lastUserText(engine)).toBe(style('plain').defaultQuestion.en);
    expect(Array.from(request.images![0]!)).toEqual(Array.from(PNG_BYTES));
    expect(request.messages[0]).toEqual({ role: 'system', content: style('plain').systemPrompt });
    expect(request.messages.filter((m) => messageImages(m).length > 0)).toHaveLength(1);

    // started -> progress (growing prefixes) -> one finished with the whole answer
    const types = sink.events.map((e) => e.type);
    expect(types[0]).toBe('started');
    expect(types[types.length - 1]).toBe('finished');
    const finalText = `Answer to: ${style('plain').defaultQuestion.en}`;
    expect(sink.terminal).toEqual([{ type: 'finished', text: finalText }]);
    const progress = sink.events.flatMap((e) => (e.type === 'progress' ? [e.text] : []));
    expect(progress.length).toBeGreaterThan(0);
    for (const text of progress) expect(finalText.startsWith(text.trim())).toBe(true);

    await ask({ ...photoRequest('2'), user: user('2', { languageCode: 'zh-hans' }), chat: privateChat('2') });
    expect(lastUserText(engine)).toBe(style('plain').defaultQuestion.zh);
  });

  it('passes the question, the style prompt, few-shot examples, overrides and adapter to the engine', async () => {
    const { engine } = setup();
    await ask(photoRequest('1', 'How many cats?', { style: 'grumpy' }));
    const request = engine.generations[0]!.request;
    const grumpy = style('grumpy');
    expect(request.messages[0]).toEqual({ role: 'system', content: grumpy.systemPrompt });
    expect(request.messages[1]).toEqual({ role: 'user', content: grumpy.examples[0]!.question });
    expect(request.messages[request.messages.length - 1]).toEqual({ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'How many cats?' }] });
    expect(request.sampling).toMatchObject(grumpy.generation);
  });

  it('continues a conversation when the user replies to the answer or to the photo, with earlier turns as context', async () => {
    const { engine } = setup();
    const first = await ask(photoRequest('1', 'What is this?', { messageId: 'photo-1' }), new RecordingSink(['ans-1a', 'ans-1b']));
    expect(first.outcome.messageIds).toEqual(['ans-1a', 'ans-1b']);
    const followUp = await ask({ user: user('1'), chat: privateChat('1'), question: 'And the colour?', replyToMessageId: 'ans-1b', messageId: 'q-2' });
    expect(followUp.outcome.status).toBe('answered');
    const request = engine.generations[1]!.request;
    expect(Array.from(request.images![0]!)).toEqual(Array.from(PNG_BYTES));
    const convo = request.messages.filter((m) => m.role !== 'system');
    expect(convo).toEqual([
      { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is this?' }] },
      { role: 'assistant', content: 'Answer to: What is this?' },
      { role: 'user', content: [{ type: 'text', text: 'And the colour?' }] },
    ]);
    // replying to the user's own photo works too, and now carries two earlier turns
    await ask({ user: user('1'), chat: privateChat('1'), question: 'Anything else?', replyToMessageId: 'photo-1' });
    expect(engine.generations[2]!.request.messages.filter((m) => m.role === 'assistant')).toHaveLength(2);
  });

  it('adds a new photo sent as a reply to the conversation: a follow-up that shows both pictures', async () => {
    const { engine } = setup();
    await ask(photoRequest('1', 'first', { messageId: 'p1' }), new RecordingSink(['a1']));
    const followUp = await ask(photoRequest('1', 'and this one?', { messageId: 'p2', replyToMessageId: 'a1', images: [imageSource(PNG_BYTES_2)] }), new RecordingSink(['a2']));
    expect(followUp.outcome.status).toBe('answered');
    const request = engine.generations[1]!.request;
    expect(request.images!.map((image) => Array.from(image))).toEqual([Array.from(PNG_BYTES), Array.from(PNG_BYTES_2)]);
    expect(request.messages.filter((m) => m.role !== 'system')).toEqual([
      { role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'first' }] },
      { role: 'assistant', content: 'Answer to: first' },
      { role: 'user', content: [{ type: 'image', image: 1 }, { type: 'text', text: 'and this one?' }] },
    ]);
    // one conversation, two pictures each on its own turn; a text follow-up still shows both
    const conversation = harness!.store.findByMessage('telegram', '1', 'a2')!;
    expect(conversation.images.map((image) => image.turnSeq)).toEqual([1, 2]);
    await ask({ user: user('1'), chat: privateChat('1'), question: 'which is brighter?', replyToMessageId: 'a2' });
    expect(engine.generations[2]!.request.messages.flatMap((m) => messageImages(m))).toEqual([0, 1]);
    // a new photo replying to nothing known starts a new conversation
    await ask(photoRequest('1', 'new one', { images: [imageSource(PNG_BYTES_2)] }));
    expect(engine.generations[3]!.request.messages.filter((m) => m.role === 'assistant')).toHaveLength(0);
  });

  it('uses the replied-to picture when the replied-to message is not a known conversation', async () => {
    const { engine } = setup();
    const { outcome } = await ask({ user: user('5'), chat: groupChat('-100'), question: 'what is this?', replyToMessageId: 'someone-elses-photo', replyImages: [imageSource(PNG_BYTES_2)] });
    expect(outcome.status).toBe('answered');
    expect(Array.from(engine.generations[0]!.request.images![0]!)).toEqual(Array.from(PNG_BYTES_2));
  });

  it('continues the chat’s current conversation for a plain question, and asks for a picture when there is none', async () => {
    const { engine } = setup();
    const none = await ask({ user: user('1'), chat: privateChat('1'), question: 'hello?' });
    expect(none.outcome).toMatchObject({ status: 'failed', code: 'IMAGE_MISSING' });
    expect(none.sink.terminal).toEqual([{ type: 'failed', code: 'IMAGE_MISSING', message: errorMessage('en', 'IMAGE_MISSING') }]);
    await ask(photoRequest('1', 'q1'));
    const next = await ask({ user: user('1'), chat: privateChat('1'), question: 'q2' });
    expect(next.outcome.status).toBe('answered');
    expect(engine.generations[1]!.request.messages.some((m) => messageText(m) === 'q1')).toBe(true);
  });

  it('never lets a private chat and a group share a conversation', async () => {
    const { engine } = setup();
    await ask(photoRequest('1', 'private question', { messageId: '10' }), new RecordingSink(['11']));
    // same user, in a group, replying to a message id that exists in the private chat
    const inGroup = await ask({ user: user('1'), chat: groupChat('-500'), question: 'follow?', replyToMessageId: '11' });
    expect(inGroup.outcome).toMatchObject({ status: 'failed', code: 'IMAGE_MISSING' });
    expect(engine.generations).toHaveLength(1);
  });

  it('bounds the context: drops the oldest turns when the conversation no longer fits', async () => {
    const engine = new FakeEngine();
    const { core } = setup(engine);
    void core;
    await ask(photoRequest('1', 'q1'));
    for (let i = 2; i <= 5; i++) await ask({ user: user('1'), chat: privateChat('1'), question: `q${i}` });
    // plain style: system + history + question; allow at most system + 2 turns + question
    engine.maxMessages = 1 + 4 + 1;
    const { outcome } = await ask({ user: user('1'), chat: privateChat('1'), question: 'q6' });
    expect(outcome.status).toBe('answered');
    const last = engine.generations[engine.generations.length - 1]!.request;
    const texts = last.messages.filter((m) => m.role === 'user').map((m) => messageText(m));
    expect(texts[texts.length - 1]).toBe('q6');
    expect(texts).not.toContain('q1');
    expect(last.messages.filter((m) => messageImages(m).length > 0)).toHaveLength(1); // the picture is still shown
    // without any history it still does not fit: the user is told
    engine.maxMessages = 1;
    const tooLong = await ask({ user: user('1'), chat: privateChat('1'), question: 'q7' });
    expect(tooLong.outcome).toMatchObject({ status: 'failed', code: 'PROMPT_TOO_LONG' });
  });
});

describe('bot core: styles and settings', () => {
  it('keeps /style across a restart of the core on the same database file', async () => {
    const engine = new FakeEngine();
    setup(engine);
    const ctx = { user: user('1'), chat: privateChat('1') };
    const set = harness!.core.setStyle(ctx, 'grumpy');
    expect(set).toMatchObject({ ok: true, source: 'user', current: { id: 'grumpy' } });
    harness = await harness!.restart();
    expect(harness.core.showStyle(ctx)).toMatchObject({ source: 'user', current: { id: 'grumpy' } });
    await ask(photoRequest('1', 'hi'));
    expect(messageText(engine.generations[0]!.request.messages[0]!)).toBe(style('grumpy').systemPrompt);
  });

  it('resolves request style > user’s own > chat’s > default', async () => {
    const { engine, core } = setup();
    const group = groupChat('-1');
    expect(core.setStyle({ user: user('1'), chat: group }, 'salesman')).toMatchObject({ ok: true, source: 'chat' });
    core.setStyle({ user: user('2'), chat: group }, 'cantonese', { scope: 'user' });
    const system = () => messageText(engine.generations[engine.generations.length - 1]!.request.messages[0]!);

    await ask({ user: user('1'), chat: group, images: [imageSource()], question: 'a' });
    expect(system()).toBe(style('salesman').systemPrompt);
    await ask({ user: user('2'), chat: group, images: [imageSource()], question: 'b' });
    expect(system()).toBe(style('cantonese').systemPrompt);
    await ask({ user: user('2'), chat: group, images: [imageSource()], question: 'c', style: 'grumpy' });
    expect(system()).toBe(style('grumpy').systemPrompt);
    // the chat default does not apply in the user's private chat; the registry default does
    await ask({ user: user('1'), chat: privateChat('1'), images: [imageSource()], question: 'd' });
    expect(system()).toBe(style('plain').systemPrompt);
    expect(core.showStyle({ user: user('1'), chat: group }).source).toBe('chat');
    expect(core.showStyle({ user: user('3'), chat: privateChat('3') }).source).toBe('default');
  });

  it('refuses an unknown style politely, for /style and for a request', async () => {
    const { core } = setup();
    const status = core.setStyle({ user: user('1'), chat: privateChat('1') }, 'pirate');
    expect(status).toMatchObject({ ok: false, code: 'STYLE_UNKNOWN', current: { id: 'plain' } });
    expect(status.text).toContain('pirate');
    expect(status.text).toContain('grumpy');
    const { outcome } = await ask(photoRequest('1', 'q', { style: 'pirate' }));
    expect(outcome).toMatchObject({ status: 'failed', code: 'STYLE_UNKNOWN' });
    expect(outcome.text).toContain('pirate');
  });

  it('accepts a style by its display name', () => {
    const { core } = setup();
    expect(core.setStyle({ user: user('1'), chat: privateChat('1') }, style('grumpy').names.zh).current.id).toBe('grumpy');
    expect(core.setStyle({ user: user('1'), chat: privateChat('1') }, 'Salesman').current.id).toBe('salesman');
  });

  it('/styles lists every style with its description and sample answer in the user language', () => {
    const { core } = setup();
    const en = core.listStyles({ user: user('1'), chat: privateChat('1') });
    expect(en.styles.map((s) => s.id)).toEqual(registry.list().map((s) => s.id));
    for (const s of registry.list()) {
      expect(en.text).toContain(s.description.en);
      expect(en.text).toContain(s.sampleAnswer.en);
    }
    const zh = core.listStyles({ user: user('2', { languageCode: 'zh' }), chat: privateChat('2') });
    expect(zh.text).toContain(style('grumpy').names.zh);
    expect(zh.text).toContain(style('grumpy').sampleAnswer.zh);
  });

  it('/reset forgets the chat’s conversation', async () => {
    const { core } = setup();
    await ask(photoRequest('1', 'q1', { messageId: 'p' }), new RecordingSink(['a']));
    expect(core.reset({ user: user('1'), chat: privateChat('1') })).toMatchObject({ ok: true, text: t('en', 'resetDone') });
    const after = await ask({ user: user('1'), chat: privateChat('1'), question: 'more?', replyToMessageId: 'a' });
    expect(after.outcome.code).toBe('IMAGE_MISSING');
    expect(core.reset({ user: user('1'), chat: privateChat('1') }).text).toBe(t('en', 'resetNothing'));
  });
});

describe('bot core: languages', () => {
  it('speaks Chinese to zh users and English to others, with the interaction locale and a saved choice winning', async () => {
    const { core } = setup();
    const zhUser = user('1', { languageCode: 'zh-TW' });
    const { outcome } = await ask({ user: zhUser, chat: privateChat('1'), question: '这是什么？' });
    expect(outcome.text).toBe(errorMessage('zh', 'IMAGE_MISSING'));
    expect(outcome.text).toMatch(/[\u4e00-\u9fff]/);
    const enUser = user('2', { languageCode: 'de' });
    expect((await ask({ user: enUser, chat: privateChat('2'), question: 'what?' })).outcome.text).toBe(errorMessage('en', 'IMAGE_MISSING'));
    // Discord: interaction.locale beats the user's language code
    expect(core.languageOf(user('3', { platform: 'discord', languageCode: 'en-US' }), 'zh-CN')).toBe('zh');
    expect(core.help({ user: zhUser, chat: privateChat('1') }).text).toBe(helpText('zh', { platform: 'telegram', admin: false }));
    // a saved choice wins over both
    core.setLanguage({ user: zhUser, chat: privateChat('1') }, 'en');
    expect(core.languageOf(zhUser, 'zh-CN')).toBe('en');
    core.setLanguage({ user: zhUser, chat: privateChat('1') }, null);
    expect(core.languageOf(zhUser)).toBe('zh');
  });
});

describe('bot core: access control', () => {
  it('refuses users outside the allow-lists, for requests and commands; admins always pass', async () => {
    const config = coreConfig({ access: { allowedUsers: ['telegram:1'], allowedChats: ['-42'], allowedGuilds: ['g1'], adminIds: ['telegram:99'] } });
    const { engine, core } = setup(new FakeEngine(), config);
    const refused = await ask(photoRequest('2', 'q'));
    expect(refused.outcome).toMatchObject({ status: 'failed', code: 'NOT_ALLOWED' });
    expect(refused.sink.terminal).toHaveLength(1);
    expect(core.setStyle({ user: user('2'), chat: privateChat('2') }, 'grumpy')).toMatchObject({ ok: false, code: 'NOT_ALLOWED' });
    expect(core.showStyle({ user: user('2'), chat: privateChat('2') }).source).toBe('default'); // nothing was saved
    expect(core.help({ user: user('2'), chat: privateChat('2') }).ok).toBe(false);

    expect((await ask(photoRequest('1', 'q'))).outcome.status).toBe('answered');
    // anyone in an allowed chat
    expect((await ask({ user: user('7'), chat: groupChat('-42'), images: [imageSource()], question: 'q' })).outcome.status).toBe('answered');
    // anyone in an allowed Discord guild
    const discordChat = { platform: 'discord' as const, id: 'chan', kind: 'group' as const, guildId: 'g1' };
    expect(core.checkAccess(user('8', { platform: 'discord' }), discordChat).allowed).toBe(true);
    expect(core.checkAccess(user('8', { platform: 'discord' }), { ...discordChat, guildId: 'g2' }).allowed).toBe(false);
    // platform-qualified ids only match their platform
    expect(core.checkAccess(user('1', { platform: 'discord' }), { platform: 'discord', id: 'x', kind: 'private' }).allowed).toBe(false);
    expect(core.checkAccess(user('99'), privateChat('99')).allowed).toBe(true);
    expect(engine.generations).toHaveLength(2);
  });

  it('/queue is for admins only', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine, coreConfig({ limits: { userInFlight: 5 } }));
    expect(core.queueStatus({ user: user('1'), chat: privateChat('1') })).toMatchObject({ ok: false, code: 'NOT_ALLOWED' });
    const tickets = [1, 2, 3].map((i) => core.ask(photoRequest(String(i), 'q'), new RecordingSink()));
    await engine.waitForGenerations(1);
    const result = core.queueStatus({ user: user('admin'), chat: privateChat('admin') });
    expect(result.status).toMatchObject({ waiting: 2, inFlight: 1, slots: 1 });
    expect(result.text).toContain('2');
    for (const g of engine.generations) g.release();
    engine.hold = false;
    await vi.waitFor(() => expect(engine.generations.length).toBe(3));
    for (const g of engine.generations) g.release();
    await Promise.all(tickets.map((tk) => tk.done));
  });
});

describe('bot core: bad input', () => {
  it('refuses an oversized photo from its reported size without downloading it', async () => {
    setup(new FakeEngine(), coreConfig({ limits: { maxImageBytes: 20 * 1024 * 1024 } }));
    const big = imageSource(PNG_BYTES, { sizeBytes: 25 * 1024 * 1024 });
    const { outcome, sink } = await ask({ user: user('1'), chat: privateChat('1'), images: [big] });
    expect(outcome.code).toBe('IMAGE_TOO_LARGE');
    expect(big.fetches).toBe(0);
    expect(sink.terminal).toHaveLength(1);
    expect(outcome.text).toContain('20 MB');
  });

  it('refuses a text document by MIME without downloading it, and by content when the MIME is generic', async () => {
    const { engine } = setup();
    const text = imageSource(new TextEncoder().encode('hello'), { mime: 'text/plain', fileName: 'notes.txt' });
    expect((await ask({ user: user('1'), chat: privateChat('1'), images: [text] })).outcome.code).toBe('IMAGE_UNSUPPORTED');
    expect(text.fetches).toBe(0);
    const disguised = imageSource(new TextEncoder().encode('%PDF-1.7 not a picture'), { mime: 'application/octet-stream' });
    const { outcome } = await ask({ user: user('1'), chat: privateChat('1'), images: [disguised] });
    expect(outcome.code).toBe('IMAGE_UNSUPPORTED');
    expect(disguised.fetches).toBe(1);
    expect(engine.generations).toHaveLength(0);
  });

  it('reports a failed download and an over-long question clearly', async () => {
    setup();
    const broken = imageSource(PNG_BYTES, {
      async fetch() {
        throw new Error('socket hang up');
      },
    });
    expect((await ask({ user: user('1'), chat: privateChat('1'), images: [broken] })).outcome.code).toBe('NETWORK');
    expect((await ask(photoRequest('1', 'x'.repeat(501)))).outcome.code).toBe('PROMPT_TOO_LONG');
  });

  it('passes the engine’s own image errors (corrupt picture) through as polite messages', async () => {
    const engine = new FakeEngine();
    engine.failNextWith = new VistyleError('IMAGE_CORRUPT', 'truncated JPEG');
    setup(engine);
    const { outcome } = await ask(photoRequest('1', 'q'));
    expect(outcome).toMatchObject({ status: 'failed', code: 'IMAGE_CORRUPT', text: errorMessage('en', 'IMAGE_CORRUPT') });
  });
});

describe('bot core: queue, limits, cancel, time-out, crash', () => {
  it('shows each waiting user their position and moves it up as the queue drains', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine);
    const sinks = [1, 2, 3].map(() => new RecordingSink());
    const tickets = sinks.map((sink, i) => core.ask(photoRequest(String(i + 1), 'q'), sink));
    await engine.waitForGenerations(1);
    await vi.waitFor(() => expect(sinks[2]!.positions).toEqual([2]));
    expect(sinks[1]!.positions).toEqual([1]);
    expect(sinks[0]!.positions).toEqual([]);
    engine.generations[0]!.release();
    await engine.waitForGenerations(2);
    await vi.waitFor(() => expect(sinks[2]!.positions).toEqual([2, 1]));
    engine.generations[1]!.release();
    await engine.waitForGenerations(3);
    engine.generations[2]!.release();
    const outcomes = await Promise.all(tickets.map((tk) => tk.done));
    expect(outcomes.map((o) => o.status)).toEqual(['answered', 'answered', 'answered']);
    // queued comes before started, started before the answer
    expect(sinks[2]!.events.map((e) => e.type).filter((type, i, all) => type !== all[i - 1])).toEqual(['queued', 'started', 'progress', 'finished']);
  });

  it("runs as many requests as the engine decodes together (info.slots): one waiting line", async () => {
    const engine = new FakeEngine();
    (engine.info as { slots: number }).slots = 2;
    engine.hold = true;
    const { core } = setup(engine);
    const sinks = [1, 2, 3].map(() => new RecordingSink());
    const tickets = sinks.map((sink, i) => core.ask(photoRequest(String(i + 1), 'q'), sink));
    await engine.waitForGenerations(2);
    // two run on the engine's two rows; the third waits in the scheduler, seeing its position
    await vi.waitFor(() => expect(sinks[2]!.positions).toEqual([1]));
    expect(engine.generations).toHaveLength(2);
    engine.generations[0]!.release();
    await engine.waitForGenerations(3);
    engine.generations[1]!.release();
    engine.generations[2]!.release();
    expect((await Promise.all(tickets.map((tk) => tk.done))).map((o) => o.status)).toEqual(['answered', 'answered', 'answered']);
  });

  it('tells a user who floods politely: one in flight, N per minute', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine, coreConfig({ limits: { userInFlight: 1, userPerMinute: 2 } }));
    const first = core.ask(photoRequest('1', 'a'), new RecordingSink());
    const second = await ask(photoRequest('1', 'b'));
    expect(second.outcome).toMatchObject({ status: 'failed', code: 'RATE_LIMITED', text: t('en', 'rateLimitedInFlight') });
    await engine.waitForGenerations(1);
    engine.generations[0]!.release();
    await first.done;
    engine.hold = false;
    expect((await ask(photoRequest('1', 'c'))).outcome.status).toBe('answered');
    const fourth = await ask(photoRequest('1', 'd'));
    expect(fourth.outcome.code).toBe('RATE_LIMITED');
    expect(fourth.outcome.text).toMatch(/wait \d+s/);
  });

  it('tells users the bot is busy beyond the queue cap', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine, coreConfig({ limits: { maxQueueLength: 1 } }));
    const a = core.ask(photoRequest('1', 'a'), new RecordingSink());
    const b = core.ask(photoRequest('2', 'b'), new RecordingSink());
    await engine.waitForGenerations(1);
    const c = await ask(photoRequest('3', 'c'));
    expect(c.outcome).toMatchObject({ status: 'failed', code: 'QUEUE_FULL' });
    expect(c.outcome.text).toBe(errorMessage('en', 'QUEUE_FULL', { waiting: 1 }));
    engine.hold = false;
    engine.generations[0]!.release();
    await Promise.all([a.done, b.done]);
  });

  it('cancels a queued request and a running one (aborting the engine); only the asker or an admin may', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine);
    const runningSink = new RecordingSink();
    const running = core.ask(photoRequest('1', 'a', { messageId: 'm1' }), runningSink);
    const queuedSink = new RecordingSink();
    const queued = core.ask(photoRequest('2', 'b'), queuedSink);
    await engine.waitForGenerations(1);
    expect(core.cancel(queued.requestId, user('3'))).toMatchObject({ ok: false, code: 'NOT_ALLOWED' });
    expect(core.cancel(queued.requestId, user('2')).ok).toBe(true);
    expect(await queued.done).toMatchObject({ status: 'failed', code: 'CANCELLED' });
    expect(queuedSink.terminal).toEqual([{ type: 'failed', code: 'CANCELLED', message: errorMessage('en', 'CANCELLED') }]);
    // Discord: the user deleted their message; an admin may cancel anyone's
    expect(core.cancelByMessage(privateChat('1'), 'm1', user('admin')).ok).toBe(true);
    expect(await running.done).toMatchObject({ status: 'failed', code: 'CANCELLED' });
    expect(engine.generations[0]!.signal?.aborted).toBe(true);
    expect(engine.generations).toHaveLength(1); // the cancelled queued request never reached the engine
    expect(core.cancel(running.requestId).ok).toBe(false);
    expect(runningSink.terminal).toHaveLength(1);
  });

  it('times out a request that runs too long', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    setup(engine, coreConfig({ limits: { requestTimeoutMs: 100 } }));
    const { outcome } = await ask(photoRequest('1', 'q'));
    expect(outcome).toMatchObject({ status: 'failed', code: 'TIMEOUT', text: errorMessage('en', 'TIMEOUT') });
    expect(engine.generations[0]!.signal?.aborted).toBe(true);
  });

  it('tells the user when the engine crashes mid-answer, and serves the next request', async () => {
    const engine = new FakeEngine();
    engine.crashNextAfterWords = 2;
    setup(engine);
    const crashed = await ask(photoRequest('1', 'q'));
    expect(crashed.outcome).toMatchObject({ status: 'failed', code: 'ENGINE_CRASHED', text: errorMessage('en', 'ENGINE_CRASHED') });
    expect(crashed.sink.events.some((e) => e.type === 'progress')).toBe(true);
    expect(crashed.sink.terminal).toHaveLength(1);
    expect((await ask(photoRequest('1', 'again'))).outcome.status).toBe('answered');
  });

  it('ends every accepted request with exactly one terminal sink call under a burst with cancels and crashes', async () => {
    const engine = new FakeEngine();
    engine.wordDelayMs = 1;
    const { core } = setup(engine, coreConfig({ limits: { userInFlight: 2, maxQueueLength: 30 } }));
    const calls = new Map<number, number>();
    // These are cancelled once the queue has them (waiting or running, whichever comes first).
    const toCancel = new Set([5, 17]);
    const cancelOnce = (i: number) => {
      if (toCancel.delete(i)) core.cancel(tickets[i]!.requestId);
    };
    const tickets: AskTicket[] = Array.from({ length: 60 }, (_, i) => {
      const sink = new RecordingSink();
      const countingSink = {
        queued: (p: number) => {
          sink.queued(p);
          cancelOnce(i);
        },
        started: () => {
          sink.started();
          cancelOnce(i);
        },
        progress: (text: string) => sink.progress(text),
        finished: async (text: string) => {
          calls.set(i, (calls.get(i) ?? 0) + 1);
          return sink.finished(text);
        },
        failed: (message: string, code: never) => {
          calls.set(i, (calls.get(i) ?? 0) + 1);
          sink.failed(message, code);
        },
      };
      if (i % 13 === 0) engine.crashNextAfterWords = 1;
      return core.ask(photoRequest(String(i % 15), `q${i}`), countingSink);
    });
    const outcomes = await Promise.all(tickets.map((tk) => tk.done));
    for (let i = 0; i < 60; i++) expect(calls.get(i)).toBe(1);
    expect(outcomes[5]!.code).toBe('CANCELLED');
    expect(outcomes[17]!.code).toBe('CANCELLED');
    const codes = new Set(outcomes.flatMap((o) => (o.code ? [o.code] : [])));
    expect(outcomes.some((o) => o.status === 'answered')).toBe(true);
    for (const code of codes) expect(['RATE_LIMITED', 'QUEUE_FULL', 'CANCELLED', 'ENGINE_CRASHED']).toContain(code);
    expect(harness!.core.queueSnapshot()).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('coalesces progress for a slow adapter and never overlaps sink calls', async () => {
    const engine = new FakeEngine();
    engine.answerFor = () => Array.from({ length: 40 }, (_, i) => `w${i}`).join(' ');
    engine.wordDelayMs = 2;
    setup(engine);
    let active = 0;
    let overlaps = 0;
    const progress: string[] = [];
    const slow = async () => {
      active += 1;
      if (active > 1) overlaps += 1;
      await new Promise((resolve) => setTimeout(resolve, 15));
      active -= 1;
    };
    const sink = {
      queued: slow,
      started: slow,
      progress: async (text: string) => {
        progress.push(text);
        await slow();
      },
      finished: async (text: string) => {
        if (active > 0) overlaps += 1;
        return { messageIds: [text.slice(0, 2)] };
      },
      failed: () => undefined,
    };
    const outcome = await harness!.core.ask(photoRequest('1', 'q'), sink).done;
    expect(outcome.status).toBe('answered');
    expect(overlaps).toBe(0);
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.length).toBeLessThan(40); // coalesced: a slow adapter sees only the latest text
    for (const text of progress) expect(outcome.text.startsWith(text.trim())).toBe(true);
  });

  it('on shutdown tells queued users, lets the running answer finish, and refuses new requests', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    const { core } = setup(engine);
    const running = core.ask(photoRequest('1', 'a'), new RecordingSink());
    const waiting = core.ask(photoRequest('2', 'b'), new RecordingSink());
    await engine.waitForGenerations(1);
    const stopping = core.shutdown({ drainMs: 5_000 });
    expect(await waiting.done).toMatchObject({ status: 'failed', code: 'SHUTTING_DOWN', text: errorMessage('en', 'SHUTTING_DOWN') });
    expect((await ask(photoRequest('3', 'c'))).outcome.code).toBe('SHUTTING_DOWN');
    engine.generations[0]!.release();
    await stopping;
    expect((await running.done).status).toBe('answered');
  });
});

describe('bot core: logging', () => {
  it('writes one structured line per request with ids, style, timings and outcome, and no secrets', async () => {
    let out = '';
    const destination = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    registerSecret('123456:SECRET-TOKEN-abc');
    const { createLogger } = await import('../../src/log.js');
    const logger = createLogger({ destination, level: 'info' });
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'vistyle-log-'));
    const store = Store.open(`${dir}/bot.db`);
    const core = createBotCore({ engine: new FakeEngine(), store, styles: registry, config: coreConfig(), logger });
    const ticket = core.ask(photoRequest('77', 'token is 123456:SECRET-TOKEN-abc ?', { style: 'grumpy' }), new RecordingSink());
    await ticket.done;
    await core.shutdown({ drainMs: 0 });
    store.close();
    const lines = out.trim().split('\n').map((line) => JSON.parse(line) as Record<string, unknown>);
    const line = lines.find((l) => l.msg === 'request answered')!;
    expect(line).toMatchObject({ requestId: ticket.requestId, platform: 'telegram', chatId: '77', userId: '77', style: 'grumpy', outcome: 'answered' });
    expect(typeof line.totalMs).toBe('number');
    expect(typeof line.ttftMs).toBe('number');
    expect(out).not.toContain('SECRET-TOKEN');
    void pino;
  });

  it('logs an adapter that fails to deliver without the credentials its error carries', async () => {
    let out = '';
    const destination = new Writable({
      write(chunk, _enc, done) {
        out += String(chunk);
        done();
      },
    });
    const { createLogger } = await import('../../src/log.js');
    const logger = createLogger({ destination, level: 'info' });
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'vistyle-log-'));
    const store = Store.open(`${dir}/bot.db`);
    const core = createBotCore({ engine: new FakeEngine(), store, styles: registry, config: coreConfig(), logger });
    class PlatformError extends Error {
      // like discord.js's DiscordAPIError: the webhook URL, interaction token included, is a field
      readonly url = 'https://discord.test/api/v10/webhooks/1/INTERACTION-TOKEN-xyz/messages/@original';
    }
    const sink = new RecordingSink();
    sink.started = () => {
      throw new PlatformError('Unknown Webhook');
    };
    sink.finished = async () => {
      throw new PlatformError('Unknown Webhook');
    };
    await core.ask(photoRequest('78', 'what?'), sink).done;
    await core.shutdown({ drainMs: 0 });
    store.close();
    expect(out).toContain('adapter sink call failed');
    expect(out).toContain('Unknown Webhook');
    expect(out).not.toContain('INTERACTION-TOKEN');
  });
});
