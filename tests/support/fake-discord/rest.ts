// The fake Discord REST API (v10 paths, as discord.js's REST client calls them) and the fake CDN.
// It keeps the rules the real API enforces that matter to a bot, each with where Discord documents
// it (DOCS = https://discord.com/developers/docs):
// - bot auth on bot routes;
// - the first interaction response within 3 s, else the interaction (and its token) is dead:
//   DOCS/interactions/receiving-and-responding#interaction-callback ("you must send an initial
//   response within 3 seconds of receiving the event. If the 3 second deadline is exceeded, the
//   token will be invalidated");
// - one initial response per interaction (40060 "already acknowledged");
// - interaction tokens valid for 15 minutes (same page, #followup-messages);
// - the first follow-up right after a deferred response (type 5) edits the deferred "is
//   thinking…" message instead of creating one, and its ephemeral flag is ignored (the deferral's
//   visibility is kept): DOCS/interactions/receiving-and-responding#create-followup-message;
//   discord/discord-api-docs#2742 (Discord staff: "If you send a followup without resolving the
//   loading state, we interpret your followup as you resolving the loading state"),
//   discordjs/discord.js#6465 ("followUp directly after a deferReply has the same effect as
//   editReply");
// - ephemeral messages (flag 64) exist only for the interaction's user and only through the
//   interaction token: the bot's channel routes do not find them (see index.ts visibleTo());
// - message content of at most 2000 characters, never empty: DOCS/resources/message#create-message;
// - edits only of the bot's own messages (50005);
// - 429 answers with `retry_after` (seconds, float) in the body, the Retry-After and
//   X-RateLimit-* headers, `global: true` plus X-RateLimit-Global for the global limit
//   (50 requests a second per bot, which interaction endpoints are not bound to):
//   DOCS/topics/rate-limits#exceeding-a-rate-limit, #global-rate-limit.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { APIMessage } from 'discord.js';
import type { FakeDiscord } from './index.js';
import type { RecordedCall, RecordedFile } from './types.js';

interface ParsedBody {
  json: unknown;
  files: { field: string; filename: string; contentType: string; data: Uint8Array }[];
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.message ?? status));
  }
}

const unknownInteraction = () => new HttpError(404, { message: 'Unknown interaction', code: 10062 });
const unknownWebhook = () => new HttpError(404, { message: 'Unknown Webhook', code: 10015 });
const unknownMessage = () => new HttpError(404, { message: 'Unknown Message', code: 10008 });
const unknownChannel = () => new HttpError(404, { message: 'Unknown Channel', code: 10003 });
const invalidWebhookToken = () => new HttpError(401, { message: 'Invalid Webhook Token', code: 50027 });

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function parseBody(req: IncomingMessage, raw: Buffer): Promise<ParsedBody> {
  const type = req.headers['content-type'] ?? '';
  if (raw.length === 0) return { json: undefined, files: [] };
  if (type.startsWith('application/json')) return { json: JSON.parse(raw.toString('utf8')), files: [] };
  if (type.startsWith('multipart/form-data')) {
    // undici's Request parses multipart bodies; no hand-written parser needed.
    const form = await new Request('http://fake.invalid/', { method: 'POST', headers: { 'content-type': type }, body: raw }).formData();
    let json: unknown;
    const files: ParsedBody['files'] = [];
    for (const [field, value] of form.entries()) {
      if (typeof value === 'string') {
        if (field === 'payload_json') json = JSON.parse(value);
      } else {
        files.push({
          field,
          filename: value.name,
          contentType: value.type,
          data: new Uint8Array(await value.arrayBuffer()),
        });
      }
    }
    return { json, files };
  }
  return { json: raw.toString('utf8'), files: [] };
}

function send(res: ServerResponse, status: number, body?: unknown, headers: Record<string, string> = {}): void {
  if (body === undefined) {
    res.writeHead(status, headers).end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
}

type Params = Record<string, string>;
type Handler = (ctx: {
  params: Params;
  query: URLSearchParams;
  body: Record<string, unknown>;
  files: ParsedBody['files'];
}) => { status: number; body?: unknown } | Promise<{ status: number; body?: unknown }>;

interface Route {
  method: string;
  pattern: RegExp;
  names: string[];
  botAuth: boolean;
  handler: Handler;
}

function route(method: string, path: string, botAuth: boolean, handler: Handler): Route {
  const names: string[] = [];
  const pattern = new RegExp(
    `^${path.replace(/[.]/g, '\\.').replace(/:(\w+)/g, (_m, name: string) => {
      names.push(name);
      return '([^/]+)';
    })}$`,
  );
  return { method, pattern, names, botAuth, handler };
}

export function createRestHandler(fake: FakeDiscord): (req: IncomingMessage, res: ServerResponse) => Promise<void> {
  const routes = buildRoutes(fake);
  return async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://127.0.0.1');
    const method = (req.method ?? 'GET').toUpperCase();
    const raw = await readBody(req);

    if (url.pathname.startsWith('/cdn/')) {
      const file = fake.cdnFiles.get(url.pathname.slice('/cdn'.length));
      fake.cdnRequests.push({ path: url.pathname, at: Date.now(), found: Boolean(file) });
      if (!file) return send(res, 404, { message: 'Not found' });
      if (file.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, file.delayMs));
      res.writeHead(200, { 'content-type': file.contentType, 'content-length': String(file.data.byteLength) });
      res.end(Buffer.from(file.data.buffer, file.data.byteOffset, file.data.byteLength));
      return;
    }

    const prefix = '/api/v10';
    // Recorded and routed decoded (discord.js sends `@original` as `%40original`).
    const pathname = decodeURIComponent(url.pathname);
    const path = pathname.startsWith(prefix) ? pathname.slice(prefix.length) : pathname;
    const call: RecordedCall = {
      method,
      path,
      query: Object.fromEntries(url.searchParams),
      body: undefined,
      files: [],
      botAuth: req.headers.authorization === `Bot ${fake.token}`,
      at: Date.now(),
      status: 0,
      rateLimited: false,
    };
    fake.calls.push(call);

    const finish = (status: number, body?: unknown, headers?: Record<string, string>) => {
      call.status = status;
      send(res, status, body, headers);
    };

    let parsed: ParsedBody;
    try {
      parsed = await parseBody(req, raw);
    } catch {
      return finish(400, { message: 'Malformed body', code: 50109 });
    }
    call.body = parsed.json;
    call.files = parsed.files.map<RecordedFile>((f) => ({
      field: f.field,
      filename: f.filename,
      contentType: f.contentType,
      size: f.data.byteLength,
    }));

    if (!url.pathname.startsWith(prefix)) return finish(404, { message: '404: Not Found', code: 0 });

    const failure = fake.takeFailure(method, path, parsed.json);
    if (failure) return finish(failure.status, failure.body);

    const limit = fake.takeRateLimit(method, path, parsed.json) ?? fake.takeGlobalLimit(path, call.botAuth, call.at);
    if (limit) {
      call.rateLimited = true;
      const headers: Record<string, string> = {
        'retry-after': String(limit.retryAfter),
        'x-ratelimit-limit': '5',
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String((Date.now() + limit.retryAfter * 1000) / 1000),
        'x-ratelimit-reset-after': String(limit.retryAfter),
        'x-ratelimit-bucket': `fake-bucket-${limit.path.source.length}`,
        'x-ratelimit-scope': limit.scope,
      };
      if (limit.global) headers['x-ratelimit-global'] = 'true';
      return finish(
        429,
        { message: 'You are being rate limited.', retry_after: limit.retryAfter, global: limit.global },
        headers,
      );
    }

    for (const r of routes) {
      if (r.method !== method) continue;
      const match = r.pattern.exec(path);
      if (!match) continue;
      if (r.botAuth && !call.botAuth) return finish(401, { message: '401: Unauthorized', code: 0 });
      const params: Params = {};
      r.names.forEach((name, i) => (params[name] = match[i + 1]!));
      try {
        const body = (parsed.json && typeof parsed.json === 'object' ? parsed.json : {}) as Record<string, unknown>;
        const out = await r.handler({ params, query: url.searchParams, body, files: parsed.files });
        return finish(out.status, out.body);
      } catch (error) {
        if (error instanceof HttpError) return finish(error.status, error.body);
        fake.internalErrors.push(error instanceof Error ? error.stack ?? error.message : String(error));
        return finish(500, { message: 'fake discord internal error', code: 0 });
      }
    }
    fake.unhandled.push(`${method} ${path}`);
    return finish(404, { message: '404: Not Found', code: 0 });
  };
}

function buildRoutes(fake: FakeDiscord): Route[] {
  const interactionByToken = (appId: string, token: string) => {
    if (appId !== fake.applicationId) throw unknownWebhook();
    const interaction = fake.interactionByToken(token);
    if (!interaction) throw unknownWebhook();
    if (Date.now() - interaction.createdAt > fake.options.interactionTokenLifetimeMs) throw invalidWebhookToken();
    return interaction;
  };
  const webhookMessage = (appId: string, token: string, messageId: string): APIMessage => {
    const interaction = interactionByToken(appId, token);
    const id = messageId === '@original' ? interaction.originalMessageId : messageId;
    if (!id || (messageId !== '@original' && !interaction.followUpIds.includes(id))) throw unknownMessage();
    const message = fake.channel(interaction.channelId)?.messages.get(id);
    if (!message) throw unknownMessage();
    return message;
  };
  const botChannel = (channelId: string) => {
    const channel = fake.channel(channelId);
    if (!channel) throw unknownChannel();
    return channel;
  };

  return [
    route('GET', '/gateway/bot', true, () => ({
      status: 200,
      body: {
        url: fake.advertisedGatewayUrl ?? fake.gatewayUrl,
        shards: 1,
        session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 },
      },
    })),
    route('GET', '/gateway', false, () => ({ status: 200, body: { url: fake.gatewayUrl } })),
    route('GET', '/users/@me', true, () => ({ status: 200, body: fake.botUser })),
    route('GET', '/applications/@me', true, () => ({ status: 200, body: fake.applicationPayload() })),
    route('POST', '/users/@me/channels', true, ({ body }) => {
      const user = fake.users.get(String(body.recipient_id));
      if (!user) throw new HttpError(400, { message: 'Invalid Recipient(s)', code: 50033 });
      return { status: 200, body: fake.channelPayload(fake.dmChannel(user)) };
    }),

    // application commands, global and per guild
    route('GET', '/applications/:app/commands', true, ({ params, query }) =>
      fake.commandsResponse(params.app!, null, query.get('with_localizations') === 'true'),
    ),
    route('GET', '/applications/:app/guilds/:guild/commands', true, ({ params, query }) =>
      fake.commandsResponse(params.app!, params.guild!, query.get('with_localizations') === 'true'),
    ),
    route('PUT', '/applications/:app/commands', true, ({ params, body }) =>
      fake.overwriteCommands(params.app!, null, body as unknown as Record<string, unknown>[]),
    ),
    route('PUT', '/applications/:app/guilds/:guild/commands', true, ({ params, body }) =>
      fake.overwriteCommands(params.app!, params.guild!, body as unknown as Record<string, unknown>[]),
    ),
    route('POST', '/applications/:app/commands', true, ({ params, body }) =>
      fake.createCommand(params.app!, null, body),
    ),
    route('POST', '/applications/:app/guilds/:guild/commands', true, ({ params, body }) =>
      fake.createCommand(params.app!, params.guild!, body),
    ),

    // interaction responses
    route('POST', '/interactions/:id/:token/callback', false, ({ params, body, query, files }) => {
      const interaction = fake.interactions.get(params.id!);
      if (!interaction || interaction.token !== params.token) throw unknownInteraction();
      if (Date.now() - interaction.createdAt > fake.options.interactionResponseWindowMs) throw unknownInteraction();
      if (interaction.callback) {
        throw new HttpError(400, { message: 'Interaction has already been acknowledged.', code: 40060 });
      }
      const type = Number(body.type);
      const data = body.data as Record<string, unknown> | undefined;
      const message = fake.applyCallback(interaction, type, data, files);
      if (query.get('with_response') !== 'true') return { status: 204 };
      return {
        status: 200,
        body: {
          interaction: {
            id: interaction.id,
            type: interaction.type,
            response_message_id: message?.id,
            response_message_loading: type === 5,
            response_message_ephemeral: Boolean(((message?.flags as number | undefined) ?? 0) & 64),
          },
          resource: message ? { type, message } : { type },
        },
      };
    }),
    route('POST', '/webhooks/:app/:token', false, ({ params, body, files, query }) => {
      const interaction = interactionByToken(params.app!, params.token!);
      if (!interaction.callback) throw unknownWebhook();
      // Directly after a deferral the follow-up fills the "is thinking…" message (create-followup-
      // message; discord-api-docs#2742): no new message, and the ephemeral flag is ignored.
      const loading = interaction.callback.type === 5 && interaction.originalMessageId
        ? fake.message(interaction.channelId, interaction.originalMessageId)
        : undefined;
      if (loading && ((loading.flags ?? 0) & 128) !== 0) {
        const { flags: _ignored, ...rest } = body;
        const edited = fake.editMessage(loading.channel_id, loading.id, rest, files);
        return query.get('wait') === 'false' ? { status: 204 } : { status: 200, body: edited };
      }
      const message = fake.createMessage(interaction.channelId, fake.botUser, body, files, {
        webhookId: fake.applicationId,
      });
      interaction.followUpIds.push(message.id);
      return query.get('wait') === 'false' ? { status: 204 } : { status: 200, body: message };
    }),
    route('GET', '/webhooks/:app/:token/messages/:message', false, ({ params }) => ({
      status: 200,
      body: webhookMessage(params.app!, params.token!, params.message!),
    })),
    route('PATCH', '/webhooks/:app/:token/messages/:message', false, ({ params, body, files }) => {
      const message = webhookMessage(params.app!, params.token!, params.message!);
      return { status: 200, body: fake.editMessage(message.channel_id, message.id, body, files) };
    }),
    route('DELETE', '/webhooks/:app/:token/messages/:message', false, ({ params }) => {
      const message = webhookMessage(params.app!, params.token!, params.message!);
      fake.channel(message.channel_id)!.messages.delete(message.id);
      return { status: 204 };
    }),

    // channels
    route('GET', '/channels/:channel', true, ({ params }) => ({
      status: 200,
      body: fake.channelPayload(botChannel(params.channel!)),
    })),
    route('POST', '/channels/:channel/typing', true, ({ params }) => {
      botChannel(params.channel!);
      return { status: 204 };
    }),
    route('POST', '/channels/:channel/messages', true, ({ params, body, files }) => {
      botChannel(params.channel!);
      return { status: 200, body: fake.createMessage(params.channel!, fake.botUser, body, files) };
    }),
    // Ephemeral messages are not channel messages: only their interaction's token reaches them.
    route('GET', '/channels/:channel/messages/:message', true, ({ params }) => {
      const message = botChannel(params.channel!).messages.get(params.message!);
      if (!message || isEphemeral(message)) throw unknownMessage();
      return { status: 200, body: message };
    }),
    route('PATCH', '/channels/:channel/messages/:message', true, ({ params, body, files }) => {
      const message = botChannel(params.channel!).messages.get(params.message!);
      if (!message || isEphemeral(message)) throw unknownMessage();
      if (message.author.id !== fake.botUser.id) {
        throw new HttpError(403, { message: 'Cannot edit a message authored by another user', code: 50005 });
      }
      return { status: 200, body: fake.editMessage(params.channel!, params.message!, body, files) };
    }),
    route('DELETE', '/channels/:channel/messages/:message', true, ({ params }) => {
      const channel = botChannel(params.channel!);
      const message = channel.messages.get(params.message!);
      if (!message || isEphemeral(message) || !channel.messages.delete(params.message!)) throw unknownMessage();
      return { status: 204 };
    }),
  ];
}

const isEphemeral = (message: APIMessage) => ((message.flags ?? 0) & 64) !== 0;

export { HttpError };
