// The fake Discord itself, checked against the real discord.js client: if these fail, the adapter
// tests would be testing a fake that discord.js does not accept.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Client, Events, GatewayIntentBits, MessageFlags, Partials, type Interaction, type Message } from 'discord.js';
import { FakeDiscord, Intent } from '../support/fake-discord/index.js';

let fake: FakeDiscord;
let client: Client | undefined;

beforeEach(async () => {
  fake = await FakeDiscord.start();
});

afterEach(async () => {
  await client?.destroy();
  client = undefined;
  await fake.close();
});

async function connect(intents: number[]): Promise<Client> {
  client = new Client({
    intents,
    partials: [Partials.Channel, Partials.Message],
    rest: { api: fake.apiRoot, cdn: fake.cdnRoot },
  });
  const ready = new Promise<void>((resolve) => client!.once(Events.ClientReady, () => resolve()));
  await client.login(fake.token);
  await ready;
  return client;
}

describe('fake discord with the real discord.js client', () => {
  it('logs in over REST + gateway with plain JSON and the identified intents', async () => {
    const c = await connect([GatewayIntentBits.Guilds]);
    expect(c.user?.id).toBe(fake.botUser.id);
    expect(c.application?.id).toBe(fake.applicationId);
    expect(c.guilds.cache.get(fake.guildId)?.channels.cache.has(fake.textChannel.id)).toBe(true);
    expect(fake.gateway.identifies).toHaveLength(1);
    expect(fake.gateway.identifies[0]!.intents).toBe(Intent.Guilds);
    expect(fake.gateway.protocolErrors).toEqual([]);
    expect(fake.callsTo('GET', /^\/gateway\/bot$/)[0]?.botAuth).toBe(true);
  });

  it('acknowledges heartbeats and accepts multipart uploads', async () => {
    await fake.close();
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 100 });
    const c = await connect([GatewayIntentBits.Guilds]);
    await fake.waitFor(() => fake.gateway.heartbeats >= 3, 'three heartbeats');
    expect(c.ws.ping).toBeGreaterThanOrEqual(0);
    const channel = c.channels.cache.get(fake.textChannel.id);
    if (!channel?.isSendable()) throw new Error('channel not sendable');
    const sent = await channel.send({ content: 'a file', files: [{ attachment: Buffer.from('hello'), name: 'hello.txt' }] });
    const post = fake.callsTo('POST', /^\/channels\/\d+\/messages$/).at(-1)!;
    expect(post.files).toEqual([expect.objectContaining({ filename: 'hello.txt', size: 5 })]);
    expect((post.body as { content: string }).content).toBe('a file');
    const stored = fake.message(fake.textChannel.id, sent.id)!;
    expect(await (await fetch(stored.attachments[0]!.url)).text()).toBe('hello');
    // (A heartbeat ack delayed on a busy machine makes discord.js resume: wait for the one session.)
    await fake.waitFor(() => fake.gateway.sessions.size === 1, 'one gateway session');
    expect(fake.gateway.identifies).toHaveLength(1);
  });

  it('rejects a wrong token at the gateway and over REST', async () => {
    client = new Client({ intents: [GatewayIntentBits.Guilds], rest: { api: fake.apiRoot } });
    await expect(client.login('not-the-token')).rejects.toThrow();
    expect(fake.callsTo('GET', /^\/gateway\/bot$/)[0]?.status).toBe(401);
  });

  it('stores commands, returns localizations only on request, and delivers interactions', async () => {
    const c = await connect([GatewayIntentBits.Guilds]);
    await c.application!.commands.set(
      [
        {
          name: 'ping',
          description: 'Ping',
          descriptionLocalizations: { 'zh-CN': '测试' },
          options: [{ name: 'file', description: 'A file', type: 11 }],
        },
      ],
      fake.guildId,
    );
    const plain = (await c.rest.get(`/applications/${fake.applicationId}/guilds/${fake.guildId}/commands`)) as object[];
    expect(plain[0]).not.toHaveProperty('description_localizations');
    const localized = await c.application!.commands.fetch({ guildId: fake.guildId, withLocalizations: true });
    expect(localized.first()?.descriptionLocalizations).toEqual({ 'zh-CN': '测试' });

    const seen = new Promise<Interaction>((resolve) => c.once(Events.InteractionCreate, resolve));
    const user = fake.createUser('alice');
    const file = fake.attachment({ filename: 'a.png', contentType: 'image/png', data: new Uint8Array([1, 2, 3]) });
    const sent = fake.slashCommand('ping', { file }, { user, locale: 'zh-CN' });
    const interaction = await seen;
    if (!interaction.isChatInputCommand()) throw new Error('expected a chat input command');
    expect(interaction.locale).toBe('zh-CN');
    expect(interaction.user.id).toBe(user.id);
    const received = interaction.options.getAttachment('file', true);
    expect(received.size).toBe(3);
    expect(new Uint8Array(await (await fetch(received.url)).arrayBuffer())).toEqual(new Uint8Array([1, 2, 3]));

    await interaction.deferReply();
    await interaction.editReply('half');
    await interaction.editReply({ content: 'done' });
    const follow = await interaction.followUp({ content: 'more', flags: MessageFlags.Ephemeral });
    expect(sent.callback?.type).toBe(5);
    const original = fake.message(fake.textChannel.id, sent.originalMessageId!)!;
    expect(original.content).toBe('done');
    expect(fake.revisionsOf(original.id).map((r) => r.content)).toEqual(['', 'half', 'done']);
    expect(fake.message(fake.textChannel.id, follow.id)?.flags).toBe(MessageFlags.Ephemeral);
    await expect(interaction.editReply('x'.repeat(2001))).rejects.toThrow(/2000/);
    expect(fake.unhandled).toEqual([]);
  });

  it('enforces the 3 s window and the token lifetime', async () => {
    await fake.close();
    fake = await FakeDiscord.start({ interactionResponseWindowMs: 200, interactionTokenLifetimeMs: 600 });
    const c = await connect([GatewayIntentBits.Guilds]);
    await c.application!.commands.set([{ name: 'ping', description: 'Ping' }]);
    const user = fake.createUser('bob');

    const late = new Promise<Interaction>((resolve) => c.once(Events.InteractionCreate, resolve));
    fake.slashCommand('ping', {}, { user });
    const lateInteraction = (await late) as import('discord.js').ChatInputCommandInteraction;
    await new Promise((r) => setTimeout(r, 300));
    await expect(lateInteraction.deferReply()).rejects.toMatchObject({ code: 10062 });

    const onTime = new Promise<Interaction>((resolve) => c.once(Events.InteractionCreate, resolve));
    fake.slashCommand('ping', {}, { user });
    const interaction = (await onTime) as import('discord.js').ChatInputCommandInteraction;
    await interaction.deferReply();
    await new Promise((r) => setTimeout(r, 700));
    await expect(interaction.editReply('late')).rejects.toMatchObject({ code: 50027 });
  });

  it('fills the deferred reply with the first follow-up, ignoring its ephemeral flag (discord-api-docs#2742)', async () => {
    const c = await connect([GatewayIntentBits.Guilds]);
    await c.application!.commands.set([{ name: 'ping', description: 'Ping' }]);
    const user = fake.createUser('dana');
    const other = fake.createUser('eve');
    const seen = new Promise<Interaction>((resolve) => c.once(Events.InteractionCreate, resolve));
    const sent = fake.slashCommand('ping', {}, { user });
    const interaction = (await seen) as import('discord.js').ChatInputCommandInteraction;
    await interaction.deferReply();
    const follow = await interaction.followUp({ content: 'private?', flags: MessageFlags.Ephemeral });
    // No new message: the public "is thinking…" reply became the follow-up's text.
    expect(follow.id).toBe(sent.originalMessageId);
    expect(sent.followUpIds).toEqual([]);
    const original = fake.message(fake.textChannel.id, sent.originalMessageId!)!;
    expect(original.content).toBe('private?');
    expect((original.flags ?? 0) & 64).toBe(0);
    expect(fake.visibleTo(other).map((m) => m.id)).toContain(original.id);
    // So deleting the reply deletes that text: the user is left with nothing.
    await interaction.deleteReply();
    expect(fake.visibleTo(user).some((m) => m.content === 'private?')).toBe(false);
    // Once the reply was edited, follow-ups are messages of their own, ephemeral ones only for the user.
    const next = new Promise<Interaction>((resolve) => c.once(Events.InteractionCreate, resolve));
    const second = fake.slashCommand('ping', {}, { user });
    const edited = (await next) as import('discord.js').ChatInputCommandInteraction;
    await edited.deferReply();
    await edited.editReply('done');
    const privately = await edited.followUp({ content: 'only you', flags: MessageFlags.Ephemeral });
    expect(privately.id).not.toBe(second.originalMessageId);
    expect(fake.visibleTo(user).map((m) => m.content)).toContain('only you');
    expect(fake.visibleTo(other).map((m) => m.content)).not.toContain('only you');
    // The bot's channel routes do not reach an ephemeral message.
    await expect(c.rest.get(`/channels/${fake.textChannel.id}/messages/${privately.id}`)).rejects.toMatchObject({ code: 10008 });
  });

  it('keeps Discord\'s global limit (50 requests a second per bot), which interaction endpoints are not bound to', async () => {
    await fake.close();
    fake = await FakeDiscord.start({ globalRequestsPerSecond: 5 });
    const raw = (path: string, init: RequestInit = {}) =>
      fetch(`${fake.apiRoot}/v10${path}`, { ...init, headers: { authorization: `Bot ${fake.token}`, ...(init.headers ?? {}) } });
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) statuses.push((await raw('/users/@me')).status);
    expect(statuses.slice(0, 5)).toEqual([200, 200, 200, 200, 200]);
    const limited = await raw('/users/@me');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('x-ratelimit-global')).toBe('true');
    expect(limited.headers.get('x-ratelimit-scope')).toBe('global');
    const body = (await limited.json()) as { retry_after: number; global: boolean };
    expect(body.global).toBe(true);
    expect(body.retry_after).toBeGreaterThan(0);
    expect(body.retry_after).toBeLessThanOrEqual(1);
    // An interaction webhook call in the same second is not counted (here: answered as unknown, not 429).
    expect((await raw(`/webhooks/${fake.applicationId}/no-such-token`, { method: 'POST' })).status).toBe(404);
    await new Promise((resolve) => setTimeout(resolve, body.retry_after * 1000 + 50));
    expect((await raw('/users/@me')).status).toBe(200);
  });

  it('answers an injected 429 with headers discord.js honours', async () => {
    const c = await connect([GatewayIntentBits.Guilds]);
    const rule = fake.rateLimit({ method: 'POST', path: /^\/channels\/\d+\/messages$/, retryAfter: 1 });
    const started = Date.now();
    const channel = c.channels.cache.get(fake.textChannel.id);
    if (!channel?.isSendable()) throw new Error('channel not sendable');
    await channel.send('hello');
    const posts = fake.callsTo('POST', /^\/channels\/\d+\/messages$/);
    expect(rule.hits).toBe(1);
    expect(posts.map((p) => p.status)).toEqual([429, 200]);
    expect(posts[1]!.at - posts[0]!.at).toBeGreaterThanOrEqual(1000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
  });

  it('answers an injected global 429 so that discord.js holds every route, not just the limited one', async () => {
    const c = await connect([GatewayIntentBits.Guilds]);
    fake.rateLimit({ method: 'POST', path: /^\/channels\/\d+\/messages$/, retryAfter: 1, global: true });
    const channel = c.channels.cache.get(fake.textChannel.id);
    if (!channel?.isSendable()) throw new Error('channel not sendable');
    const sent = channel.send('hello');
    const limited = await fake.waitFor(() => fake.calls.find((call) => call.rateLimited), 'the global 429');
    await c.rest.get('/users/@me');
    await sent;
    const me = fake.callsTo('GET', /^\/users\/@me$/).at(-1)!;
    expect(me.at - limited.at).toBeGreaterThanOrEqual(900);
  });

  it('sends message events only to the intents that allow them, content only with MESSAGE_CONTENT or a mention', async () => {
    const c = await connect([GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages]);
    const user = fake.createUser('carol');
    const messages: Message[] = [];
    c.on(Events.MessageCreate, (m) => messages.push(m));
    const deleted: string[] = [];
    c.on(Events.MessageDelete, (m) => deleted.push(m.id));
    const photo = fake.attachment({ filename: 'p.jpg', contentType: 'image/jpeg', data: new Uint8Array(10) });
    fake.userMessage({ user, content: 'no mention', attachments: [photo] });
    const mention = fake.userMessage({ user, content: 'what is it', attachments: [photo], mentionBot: true });
    await fake.waitFor(() => messages.length === 2, 'two messages');
    expect(messages[0]!.content).toBe('');
    expect(messages[0]!.attachments.size).toBe(0);
    expect(messages[1]!.content).toBe(`<@${fake.botUser.id}> what is it`);
    expect(messages[1]!.attachments.first()?.contentType).toBe('image/jpeg');
    expect(messages[1]!.mentions.users.has(fake.botUser.id)).toBe(true);
    fake.deleteMessage(mention);
    await fake.waitFor(() => deleted.includes(mention.id), 'message delete');
  });
});
