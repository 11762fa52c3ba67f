// Mention mode end to end: real discord.js against the fake Discord, real core and engine. A
// mention with a picture in a channel, follow-ups by reply, cancelling by deleting the message,
// DMs, and the gateway intents each mode asks for.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { FakeDiscord, Intent } from '../support/fake-discord/index.js';
import { FIXTURE_PNG, finalChannelReply, sleep, startBot, startEngine, tempDir, type EngineHandle, type RunningBot } from './harness.js';

let engine: EngineHandle;
let dir: string;
let cleanup: () => void;
let fake: FakeDiscord;
let bot: RunningBot | undefined;
let dbCount = 0;

beforeAll(async () => {
  ({ dir, cleanup } = tempDir());
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

async function start(mentionMode = true): Promise<RunningBot> {
  dbCount += 1;
  bot = await startBot({ fake, engine: engine.engine, dbPath: join(dir, `mention-${dbCount}.db`), mentionMode });
  return bot;
}

function picture(name = 'cat.png', delayMs = 0) {
  return fake.attachment({ filename: name, contentType: 'image/png', data: FIXTURE_PNG, width: 64, height: 48, delayMs });
}

async function stored(channelId: string, messageId: string) {
  return fake.waitFor(() => bot!.store.findByMessage('discord', channelId, messageId), `the conversation of ${messageId}`, 10_000);
}

describe('discord mention mode', () => {
  it('asks for the minimal gateway intents in each mode', async () => {
    fake = await FakeDiscord.start();
    await start(false);
    expect(fake.gateway.identifies.at(-1)!.intents).toBe(Intent.Guilds);
    await bot!.stop();
    bot = undefined;
    await start(true);
    expect(fake.gateway.identifies.at(-1)!.intents).toBe(
      Intent.Guilds | Intent.GuildMessages | Intent.DirectMessages | Intent.MessageContent,
    );
    expect(fake.gateway.protocolErrors).toEqual([]);
  });

  it('answers a mention with a picture in a reply, and a reply to the answer as a follow-up on the same picture', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('ivy');
    const asking = fake.userMessage({ user, content: 'what is this?', attachments: [picture()], mentionBot: true });
    const answer = await finalChannelReply(fake, fake.textChannel.id, asking.id);
    const conversation = await stored(fake.textChannel.id, answer.id);
    expect(conversation.turns).toHaveLength(1);
    expect(conversation.turns[0]!.question).toBe('what is this?');
    expect(answer.content).toBe(conversation.turns[0]!.answer);
    // The reply did not ping anyone.
    const post = fake.callsTo('POST', /^\/channels\/\d+\/messages$/)[0]!;
    expect((post.body as { allowed_mentions: unknown }).allowed_mentions).toMatchObject({ parse: [], replied_user: false });

    // A reply to the answer, with the reply ping turned off (no mention at all).
    const followUp = fake.userMessage({ user, content: 'and the colours?', replyTo: answer, pingRepliedUser: false });
    const second = await finalChannelReply(fake, fake.textChannel.id, followUp.id);
    const continued = await fake.waitFor(() => {
      const c = bot!.store.findByMessage('discord', fake.textChannel.id, second.id);
      return c && c.turns.length === 2 ? c : undefined;
    }, 'the second turn');
    expect(continued.id).toBe(conversation.id);
    expect(continued.turns[1]!.question).toBe('and the colours?');
    expect(second.content).toBe(continued.turns[1]!.answer);
  }, 60_000);

  it("answers a mention that replies to someone else's photo about that photo", async () => {
    fake = await FakeDiscord.start();
    await start();
    const [poster, asker] = [fake.createUser('poster'), fake.createUser('asker')];
    const photo = fake.userMessage({ user: poster, content: 'my cat', attachments: [picture()] });
    const asking = fake.userMessage({ user: asker, content: 'is it cute?', mentionBot: true, replyTo: photo, pingRepliedUser: false });
    const answer = await finalChannelReply(fake, fake.textChannel.id, asking.id);
    const conversation = await stored(fake.textChannel.id, answer.id);
    expect(conversation.turns[0]!.question).toBe('is it cute?');
    expect(conversation.userId).toBe(asker.id);
  }, 60_000);

  it('cancels a request when its message is deleted', async () => {
    fake = await FakeDiscord.start();
    await start();
    const [holder, asker] = [fake.createUser('holder'), fake.createUser('asker')];
    const first = fake.userMessage({ user: holder, attachments: [picture('slow.png', 2500)], mentionBot: true });
    await fake.waitFor(() => fake.messages(fake.textChannel.id).some((m) => m.message_reference?.message_id === first.id), 'first status');
    const asking = fake.userMessage({ user: asker, content: 'hello?', attachments: [picture()], mentionBot: true });
    await fake.waitFor(
      () => fake.messages(fake.textChannel.id).find((m) => m.message_reference?.message_id === asking.id && m.content === t('en', 'queued', { position: 1 })),
      'the queued status',
    );
    fake.deleteMessage(asking);
    const reply = await finalChannelReply(fake, fake.textChannel.id, asking.id);
    expect(reply.content).toBe(t('en', 'error.CANCELLED'));
    await finalChannelReply(fake, fake.textChannel.id, first.id);
    await sleep(300);
    expect(bot!.store.findByMessage('discord', fake.textChannel.id, asking.id)).toBeUndefined();
  }, 60_000);

  it('answers a picture sent in a DM without a mention', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('jun');
    const dm = fake.dmChannel(user);
    const asking = fake.userMessage({ user, channel: dm, attachments: [picture()] });
    const answer = await finalChannelReply(fake, dm.id, asking.id);
    const conversation = await stored(dm.id, answer.id);
    // No question: the default style's default question (English: no locale known yet).
    expect(conversation.turns[0]!.question).toBe(bot!.core.resolveStyle({ platform: 'discord', id: user.id }, { platform: 'discord', id: dm.id, kind: 'private' }).style.defaultQuestion.en);
  }, 60_000);

  it('ignores messages not addressed to the bot, and asks for a picture when a mention has none', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('kim');
    fake.userMessage({ user, content: 'just chatting', attachments: [picture()] });
    const other = fake.createUser('lee');
    const chat = fake.userMessage({ user: other, content: 'hi' });
    fake.userMessage({ user, content: 'reply to a person', replyTo: chat });
    const bare = fake.userMessage({ user, content: 'hello bot', mentionBot: true });
    const reply = await finalChannelReply(fake, fake.textChannel.id, bare.id);
    expect(reply.content).toBe(t('en', 'error.IMAGE_MISSING'));
    await sleep(500);
    expect(fake.messages(fake.textChannel.id).filter((m) => m.author.id === fake.botUser.id)).toHaveLength(1);
  }, 30_000);
});
