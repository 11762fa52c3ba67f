// Plain records the fake keeps and hands to tests. Wire shapes come from discord-api-types
// (re-exported by discord.js) so that a payload the fake builds is what the real API would send.
import type { APIMessage, APIUser } from 'discord.js';

export interface RecordedFile {
  field: string;
  filename: string;
  contentType: string;
  size: number;
}

/** One REST request as the fake received it. */
export interface RecordedCall {
  method: string;
  /** Path after `/api/v10`, e.g. `/channels/1/messages`. */
  path: string;
  query: Record<string, string>;
  /** Parsed JSON body (or a multipart body's `payload_json`), undefined when there was none. */
  body: unknown;
  files: RecordedFile[];
  /** Whether it carried `Authorization: Bot <token>`. */
  botAuth: boolean;
  at: number;
  status: number;
  /** True when the fake answered with an injected 429. */
  rateLimited: boolean;
}

export interface MessageRevision {
  at: number;
  content: string;
  flags: number;
  components: unknown[];
}

export interface FakeChannel {
  id: string;
  /** 0 guild text, 1 DM. */
  type: 0 | 1;
  guildId: string | null;
  name: string;
  /** For DMs: the other user. */
  recipient: APIUser | null;
  messages: Map<string, APIMessage>;
}

export interface FakeInteraction {
  id: string;
  token: string;
  type: number;
  createdAt: number;
  channelId: string;
  guildId: string | null;
  user: APIUser;
  payload: Record<string, unknown>;
  /** The initial response (callback), once made. */
  callback: { type: number; data: Record<string, unknown> | undefined; at: number } | null;
  /** The message the initial response created or (for components) targets. */
  originalMessageId: string | null;
  followUpIds: string[];
}

export interface RateLimitRule {
  method: string | undefined;
  path: RegExp;
  /** Seconds, as Discord sends them. */
  retryAfter: number;
  global: boolean;
  scope: 'user' | 'shared' | 'global';
  /** Only requests whose parsed body passes this get the 429 (e.g. the final edit). */
  when: ((body: unknown) => boolean) | undefined;
  /** How many matching requests still get the 429. */
  remaining: number;
  hits: number;
}

export interface AttachmentInput {
  filename: string;
  contentType?: string;
  data: Uint8Array;
  width?: number;
  height?: number;
  /** The CDN waits this long before answering a download (a slow upload host). */
  delayMs?: number;
  /** Report this size instead of the data's (Discord reports sizes; tests of size checks). */
  reportedSize?: number;
}

/** An injected error answer (403 Missing Permissions, 500...) for the next matching requests. */
export interface FailureRule {
  method: string | undefined;
  path: RegExp;
  status: number;
  body: Record<string, unknown>;
  /** Only requests whose parsed body passes this fail. */
  when: ((body: unknown) => boolean) | undefined;
  remaining: number;
  hits: number;
}
