// A fake OpenAI-compatible chat API on 127.0.0.1 for the data-maker tests. What it does with a
// request depends on a tag in the caption (the user message): [good], [fenced], [broken],
// [broken-once], [429-once], [500-twice], [500-always], [hang-once], [hang-always], [no-balance],
// [no-quota]. It records every
// request so tests can check what was sent.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  at: number;
  caption: string;
  tag: string;
  authorization: string | undefined;
  body: { model: string; messages: Array<{ role: string; content: string }>; response_format?: { type: string }; temperature?: number };
}

export interface FakeChatServer {
  baseUrl: string;
  requests: RecordedRequest[];
  /** Every tag answers well from now on (for the resume test). */
  allGood: boolean;
  /** Refuse response_format with a 400, as some servers do. */
  rejectResponseFormat: boolean;
  /** Answer 401 to everything. */
  unauthorized: boolean;
  retryAfterSeconds: string;
  close(): Promise<void>;
}

const USAGE = { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 };

function completion(content: string): string {
  return JSON.stringify({
    id: 'chatcmpl-test',
    object: 'chat.completion',
    choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
    usage: USAGE,
  });
}

function qa(caption: string): string {
  const subject = caption.replace(/\[[^\]]*\]/g, '').trim();
  return JSON.stringify({ question: `What is shown? (${subject.slice(0, 40)})`, answer: `It is ${subject.slice(0, 40)}, obviously!` });
}

export async function startFakeChatServer(): Promise<FakeChatServer> {
  const attempts = new Map<string, number>();
  const state: FakeChatServer = {
    baseUrl: '',
    requests: [],
    allGood: false,
    rejectResponseFormat: false,
    unauthorized: false,
    retryAfterSeconds: '1',
    close: async () => undefined,
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
      return;
    }
    const body = JSON.parse(raw) as RecordedRequest['body'];
    const user = body.messages.find((m) => m.role === 'user')?.content ?? '';
    const caption = user.replace(/^Photo description:\n/, '');
    const tag = /\[([a-z0-9-]+)\]/.exec(caption)?.[1] ?? 'good';
    state.requests.push({ at: Date.now(), caption, tag, authorization: req.headers.authorization, body });
    const send = (status: number, payload: string, headers: Record<string, string> = {}): void => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(payload);
    };
    if (state.unauthorized) return send(401, JSON.stringify({ error: { message: 'Authentication Fails (invalid key)' } }));
    if (state.rejectResponseFormat && body.response_format) {
      return send(400, JSON.stringify({ error: { message: 'This model does not support response_format' } }));
    }
    const attempt = (attempts.get(caption) ?? 0) + 1;
    attempts.set(caption, attempt);
    if (state.allGood) return send(200, completion(qa(caption)));
    switch (tag) {
      case 'fenced':
        return send(200, completion(`Sure! Here you go:\n\`\`\`json\n${qa(caption)}\n\`\`\`\nHope that helps.`));
      case 'broken':
        return send(200, completion('{"question": "What is it?", "answer": "cut off'));
      case 'broken-once':
        return send(200, completion(attempt === 1 ? 'I cannot answer in JSON today.' : qa(caption)));
      case '429-once':
        if (attempt === 1) {
          return send(429, JSON.stringify({ error: { message: 'Rate limit reached' } }), { 'retry-after': state.retryAfterSeconds });
        }
        return send(200, completion(qa(caption)));
      case '500-twice':
        if (attempt <= 2) return send(500, JSON.stringify({ error: { message: 'internal error' } }));
        return send(200, completion(qa(caption)));
      case '500-always':
        return send(503, JSON.stringify({ error: { message: 'overloaded' } }));
      case 'hang-once':
        if (attempt === 1) return; // never answer
        return send(200, completion(qa(caption)));
      case 'hang-always':
        return;
      case 'no-balance': // DeepSeek
        return send(402, JSON.stringify({ error: { message: 'Insufficient Balance', type: 'unknown_error' } }));
      case 'no-quota': // OpenAI
        return send(
          429,
          JSON.stringify({ error: { message: 'You exceeded your current quota.', type: 'insufficient_quota', code: 'insufficient_quota' } }),
          { 'retry-after': '1' },
        );
      default:
        return send(200, completion(qa(caption)));
    }
  };

  const server: Server = createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => (raw += chunk));
    req.on('end', () => handle(req, res, raw));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  state.baseUrl = `http://127.0.0.1:${port}/v1`;
  state.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return state;
}
