// The fake Discord gateway: a WebSocket server speaking gateway v10 in plain JSON (no zlib, no
// etf). HELLO -> IDENTIFY -> READY + GUILD_CREATE, heartbeats acknowledged, RESUME answered with
// RESUMED, and dispatches pushed by the test. Each session remembers the intents it identified
// with so that the fake only sends the events and message content those intents allow.
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { snowflake } from './snowflake.js';

export interface GatewayIdentify {
  token: string;
  intents: number;
  properties: Record<string, unknown>;
  compress: boolean | undefined;
  shard: [number, number] | undefined;
  at: number;
}

export interface GatewaySession {
  socket: WebSocket;
  query: URLSearchParams;
  identify: GatewayIdentify | null;
  sessionId: string | null;
  seq: number;
  ready: boolean;
}

export interface GatewayHooks {
  token: string;
  /** Privileged intents (GuildMembers, GuildPresences, MessageContent) enabled for the app. */
  privilegedIntents: number;
  heartbeatIntervalMs: number;
  /** READY's `d` for a session (user, application, unavailable guild stubs). */
  readyPayload(session: GatewaySession): Record<string, unknown>;
  /** Full GUILD_CREATE payloads sent after READY. */
  guildCreates(): Record<string, unknown>[];
}

export class FakeGateway {
  readonly sessions = new Set<GatewaySession>();
  /** WebSocket connections accepted so far, closed ones included. */
  accepted = 0;
  readonly identifies: GatewayIdentify[] = [];
  readonly resumes: { sessionId: string; seq: number; at: number }[] = [];
  /** Client-side protocol mistakes (bad query, unknown opcode...) for tests to assert on. */
  readonly protocolErrors: string[] = [];
  heartbeats = 0;
  private readonly wss = new WebSocketServer({ noServer: true });
  private readonly knownSessions = new Map<string, GatewayIdentify>();

  constructor(private readonly hooks: GatewayHooks) {}

  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(request.url ?? '/', 'http://127.0.0.1');
    this.wss.handleUpgrade(request, socket, head, (ws) => this.onConnection(ws, url.searchParams));
  }

  private onConnection(socket: WebSocket, query: URLSearchParams): void {
    const session: GatewaySession = { socket, query, identify: null, sessionId: null, seq: 0, ready: false };
    this.sessions.add(session);
    this.accepted++;
    if (query.get('v') !== '10') this.protocolErrors.push(`gateway version ${query.get('v')}`);
    if (query.get('encoding') !== 'json') this.protocolErrors.push(`encoding ${query.get('encoding')}`);
    if (query.has('compress')) this.protocolErrors.push(`compress=${query.get('compress')} requested`);
    socket.on('close', () => this.sessions.delete(session));
    socket.on('message', (raw, isBinary) => {
      if (isBinary) {
        this.protocolErrors.push('binary frame from client');
        return;
      }
      let payload: { op: number; d: unknown };
      try {
        payload = JSON.parse(raw.toString()) as { op: number; d: unknown };
      } catch {
        socket.close(4002, 'Error while decoding payload.');
        return;
      }
      this.onPayload(session, payload);
    });
    this.send(session, { op: 10, d: { heartbeat_interval: this.hooks.heartbeatIntervalMs } });
  }

  private onPayload(session: GatewaySession, payload: { op: number; d: unknown }): void {
    switch (payload.op) {
      case 1: // heartbeat
        this.heartbeats++;
        this.send(session, { op: 11 });
        return;
      case 2: {
        // identify
        const d = payload.d as Partial<GatewayIdentify>;
        if (session.identify) {
          session.socket.close(4005, 'Already authenticated.');
          return;
        }
        if (d.token !== this.hooks.token) {
          session.socket.close(4004, 'Authentication failed.');
          return;
        }
        const privileged = (1 << 1) | (1 << 8) | (1 << 15);
        if (Number(d.intents ?? 0) & privileged & ~this.hooks.privilegedIntents) {
          session.socket.close(4014, 'Disallowed intent(s).');
          return;
        }
        const identify: GatewayIdentify = {
          token: d.token,
          intents: Number(d.intents ?? 0),
          properties: (d.properties as Record<string, unknown>) ?? {},
          compress: d.compress,
          shard: d.shard,
          at: Date.now(),
        };
        if (identify.compress) this.protocolErrors.push('identify asked for payload compression');
        this.identifies.push(identify);
        session.identify = identify;
        session.sessionId = `session-${snowflake()}`;
        this.knownSessions.set(session.sessionId, identify);
        session.ready = true;
        this.dispatchTo(session, 'READY', this.hooks.readyPayload(session));
        for (const guild of this.hooks.guildCreates()) this.dispatchTo(session, 'GUILD_CREATE', guild);
        return;
      }
      case 3: // presence update
      case 4: // voice state
      case 8: // request guild members
        return;
      case 6: {
        // resume
        const d = payload.d as { token?: string; session_id?: string; seq?: number };
        const known = d.session_id ? this.knownSessions.get(d.session_id) : undefined;
        if (d.token !== this.hooks.token || !known) {
          this.send(session, { op: 9, d: false });
          return;
        }
        this.resumes.push({ sessionId: d.session_id!, seq: Number(d.seq ?? 0), at: Date.now() });
        session.identify = known;
        session.sessionId = d.session_id!;
        session.seq = Number(d.seq ?? 0);
        session.ready = true;
        this.dispatchTo(session, 'RESUMED', {});
        return;
      }
      default:
        this.protocolErrors.push(`unknown opcode ${payload.op}`);
        session.socket.close(4001, 'Unknown opcode.');
    }
  }

  /** Send a dispatch to every identified session whose intents pass `accepts`. */
  dispatch(
    event: string,
    data: Record<string, unknown> | ((session: GatewaySession) => Record<string, unknown> | null),
    accepts: (intents: number) => boolean = () => true,
  ): number {
    let sent = 0;
    for (const session of this.sessions) {
      if (!session.ready || !session.identify || !accepts(session.identify.intents)) continue;
      const d = typeof data === 'function' ? data(session) : data;
      if (d === null) continue;
      this.dispatchTo(session, event, d);
      sent++;
    }
    return sent;
  }

  /** Close every connection with this close code (the client then resumes or reconnects). */
  closeAll(code: number, reason = ''): void {
    for (const session of this.sessions) session.socket.close(code, reason);
  }

  async close(): Promise<void> {
    for (const session of this.sessions) session.socket.terminate();
    this.sessions.clear();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private dispatchTo(session: GatewaySession, event: string, d: Record<string, unknown>): void {
    session.seq++;
    this.send(session, { op: 0, t: event, s: session.seq, d });
  }

  private send(session: GatewaySession, payload: Record<string, unknown>): void {
    if (session.socket.readyState === session.socket.OPEN) session.socket.send(JSON.stringify(payload));
  }
}
