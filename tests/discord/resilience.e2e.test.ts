// Platform trouble end to end: refused registrations and sends, a dropped gateway connection and a
// wrong token are structured log lines or one clear error, never a crash or a leaked secret.
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDiscordAdapter } from '../../adapters/discord/index.js';
import { isVistyleError } from '../../src/errors.js';
import { FakeDiscord } from '../support/fake-discord/index.js';
import { FIXTURE_PNG, LogCapture, finalChannelReply, finalReply, startBot, startEngine, tempDir, type EngineHandle, type RunningBot } from './harness.js';

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

async function start(options: { mentionMode?: boolean } = {}): Promise<RunningBot> {
  dbCount += 1;
  bot = await startBot({ fake, engine: engine.engine, dbPath: join(dir, `resilience-${dbCount}.db`), mentionMode: options.mentionMode ?? true });
  return bot;
}

function picture() {
  return fake.attachment({ filename: 'cat.png', contentType: 'image/png', data: FIXTURE_PNG, width: 64, height: 48 });
}

describe('discord platform errors', () => {
  it('keeps running when Discord refuses the command registration, with one structured error line', async () => {
    fake = await FakeDiscord.start();
    fake.fail({ method: 'PUT', path: /\/commands$/, status: 403, body: { message: 'Missing Access', code: 50001 } });
    await start();
    const failure = bot!.logs.records().find((r) => r.msg === 'discord command registration failed');
    expect(failure).toMatchObject({ level: 50, module: 'discord', error: { type: 'DiscordAPIError', code: 50001, status: 403 } });
    expect(bot!.logs.text()).not.toContain(fake.token);

    // Still serving: a mention is answered.
    const user = fake.createUser('mia');
    const asking = fake.userMessage({ user, attachments: [picture()], mentionBot: true });
    await finalChannelReply(fake, fake.textChannel.id, asking.id);
  }, 60_000);

  it('survives answers Discord refuses to post (missing permissions) and answers once it can again', async () => {
    fake = await FakeDiscord.start();
    await start();
    const refusal = fake.fail({ method: 'POST', path: /^\/channels\/\d+\/messages$/, status: 403, body: { message: 'Missing Permissions', code: 50013 }, times: 1000 });
    const user = fake.createUser('ned');
    const lost = fake.userMessage({ user, attachments: [picture()], mentionBot: true });
    await fake.waitFor(
      () => bot!.logs.records().find((r) => r.msg === 'the adapter could not deliver the answer'),
      'the undelivered answer to be logged',
      30_000,
    );
    expect(refusal.hits).toBeGreaterThan(0);
    expect(fake.messages(fake.textChannel.id).some((m) => m.message_reference?.message_id === lost.id)).toBe(false);

    refusal.remaining = 0;
    const asking = fake.userMessage({ user, attachments: [picture()], mentionBot: true });
    await finalChannelReply(fake, fake.textChannel.id, asking.id);
    expect(bot!.logs.text()).not.toContain(fake.token);
  }, 60_000);

  it('logs a refused streamed edit without the interaction token and still delivers the answer', async () => {
    fake = await FakeDiscord.start();
    await start({ mentionMode: false });
    // Every edit that still shows the Cancel button (status and streamed text) is refused.
    const refusal = fake.fail({
      method: 'PATCH',
      path: /^\/webhooks\//,
      status: 400,
      body: { message: 'Invalid Form Body', code: 50035 },
      times: 1000,
      when: (body) => ((body as { components?: unknown[] }).components ?? []).length > 0,
    });
    const user = fake.createUser('pia');
    const interaction = fake.slashCommand('ask', { image: picture() }, { user });
    const reply = await finalReply(fake, interaction);
    expect(refusal.hits).toBeGreaterThan(0);
    const stored = await fake.waitFor(() => bot!.store.findByMessage('discord', interaction.channelId, reply.original!.id), 'the stored turn');
    expect(reply.original!.content).toBe(stored.turns[0]?.answer);
    const warning = bot!.logs.records().find((r) => r.msg === 'discord status edit failed');
    expect(warning).toMatchObject({ level: 40, error: { type: 'DiscordAPIError', code: 50035, status: 400 } });
    expect(bot!.logs.text()).not.toContain(interaction.token);
    expect(bot!.logs.text()).not.toContain(fake.token);
  }, 60_000);

  it('delivers the answer in a new message when its status message was deleted (mention mode)', async () => {
    fake = await FakeDiscord.start();
    await start();
    const user = fake.createUser('rex');
    // The picture downloads slowly, so "thinking…" stays up long enough to be deleted.
    const slow = fake.attachment({ filename: 'slow.png', contentType: 'image/png', data: FIXTURE_PNG, width: 64, height: 48, delayMs: 3000 });
    const asking = fake.userMessage({ user, attachments: [slow], mentionBot: true });
    const status = await fake.waitFor(
      () => fake.messages(fake.textChannel.id).find((m) => m.author.id === fake.botUser.id && m.message_reference?.message_id === asking.id),
      'the status message',
    );
    fake.deleteMessage(status);
    const answer = await finalChannelReply(fake, fake.textChannel.id, asking.id, 30_000);
    expect(answer.id).not.toBe(status.id);
    const conversation = await fake.waitFor(() => bot!.store.findByMessage('discord', fake.textChannel.id, answer.id), 'the stored turn');
    expect(answer.content).toBe(conversation.turns[0]!.answer);
  }, 60_000);

  it('delivers the answer in a follow-up when the interaction reply was deleted', async () => {
    fake = await FakeDiscord.start();
    await start({ mentionMode: false });
    const user = fake.createUser('sam');
    const slow = fake.attachment({ filename: 'slow.png', contentType: 'image/png', data: FIXTURE_PNG, width: 64, height: 48, delayMs: 3000 });
    const interaction = fake.slashCommand('ask', { image: slow }, { user });
    const original = await fake.waitFor(() => {
      const message = interaction.originalMessageId ? fake.message(interaction.channelId, interaction.originalMessageId) : undefined;
      return message && message.content.length > 0 ? message : undefined;
    }, 'the "thinking" reply');
    fake.deleteMessage(original);
    // The core stores the turn once every part of the answer is delivered.
    const conversation = await fake.waitFor(
      () => interaction.followUpIds.map((id) => bot!.store.findByMessage('discord', interaction.channelId, id)).find(Boolean),
      'the stored turn',
      30_000,
    );
    const followUps = interaction.followUpIds.map((id) => fake.message(interaction.channelId, id)!);
    const strip = (text: string) => text.replace(/\s+/g, '');
    expect(strip(followUps.map((m) => m.content).join(''))).toBe(strip(conversation.turns[0]!.answer));
    for (const message of followUps) {
      expect(message.components ?? []).toEqual([]);
      expect(message.flags ?? 0).toBe(0); // public, like the reply they replace
    }
    expect(fake.message(interaction.channelId, original.id)).toBeUndefined();
  }, 60_000);

  it('resumes after the gateway drops the connection and keeps answering', async () => {
    fake = await FakeDiscord.start();
    await start();
    fake.gateway.closeAll(4000, 'unknown error');
    await fake.waitFor(() => fake.gateway.resumes.length === 1 && fake.gateway.sessions.size === 1, 'the resume', 20_000);
    await fake.waitFor(() => bot!.logs.records().find((r) => r.msg === 'discord gateway resumed'), 'the resume log line');
    const user = fake.createUser('olga');
    const asking = fake.userMessage({ user, attachments: [picture()], mentionBot: true });
    await finalChannelReply(fake, fake.textChannel.id, asking.id);
    expect(fake.gateway.identifies).toHaveLength(1);
  }, 60_000);

  it('fails to start with a clear error when mention mode needs the Message Content intent the app lacks', async () => {
    fake = await FakeDiscord.start({ privilegedIntents: 0 });
    const logs = new LogCapture();
    const adapter = createDiscordAdapter({
      core: { limits: { maxImageBytes: 1, maxQuestionChars: 1 } } as never, // never reached: login fails first
      logger: logs.logger,
      token: fake.token,
      applicationId: fake.applicationId,
      apiRoot: fake.apiRoot,
      mentionMode: true,
    });
    const error = await adapter.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/Message Content intent.*DISCORD_MENTION_MODE/);
    await adapter.stop();
  });

  it('fails to start with one clear error, without echoing it, when the token is wrong', async () => {
    fake = await FakeDiscord.start();
    const logs = new LogCapture();
    const wrongToken = 'MTIzNDU2Nzg5MDEyMzQ1Njc4.wrong.token-that-is-not-valid';
    const adapter = createDiscordAdapter({
      core: { limits: { maxImageBytes: 1, maxQuestionChars: 1 } } as never, // never reached: login fails first
      logger: logs.logger,
      token: wrongToken,
      applicationId: fake.applicationId,
      apiRoot: fake.apiRoot,
      mentionMode: false,
    });
    const error = await adapter.start().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(isVistyleError(error, 'CONFIG_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/DISCORD_TOKEN/);
    expect(JSON.stringify(error)).not.toContain(wrongToken);
    expect((error as Error).message).not.toContain(wrongToken);
    expect(logs.text()).not.toContain(wrongToken);
    await adapter.stop();
  });
});
