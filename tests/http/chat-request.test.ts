// The chat completion body and the error mapping, on their own: which fields reach the sampler,
// which are refused (and with which param), and which status each vistyle failure becomes.
import { describe, expect, it } from 'vitest';
import { ApiError, apiErrorFrom } from '../../src/http/api-error.js';
import { parseChatRequest } from '../../src/http/chat-request.js';
import { VistyleError } from '../../src/errors.js';
import { LimitError } from '../../src/scheduler/scheduler.js';

const limits = { maxImagesPerMessage: 2 };
const user = (content: unknown) => ({ role: 'user', content });

function refusal(body: unknown): ApiError {
  try {
    parseChatRequest(body, limits);
  } catch (error) {
    if (error instanceof ApiError) return error;
    throw error;
  }
  throw new Error('expected a refusal');
}

describe('parseChatRequest', () => {
  it('maps the sampling fields', () => {
    const chat = parseChatRequest(
      { model: ' vistyle/grumpy ', messages: [user('hi')], temperature: 0.3, top_p: 0, max_tokens: 9, max_completion_tokens: 12, stop: 'END', seed: -5, frequency_penalty: 0, presence_penalty: null, n: 1, user: 'ignored' },
      limits,
    );
    expect(chat.model).toBe('vistyle/grumpy');
    expect(chat.sampling).toEqual({ temperature: 0.3, topP: 1e-9, maxNewTokens: 12, stopStrings: ['END'], seed: -5 });
    expect(chat.stream).toBe(false);
    expect(parseChatRequest({ messages: [user('hi')], stream: true, stream_options: { include_usage: true } }, limits)).toMatchObject({ model: 'vistyle', stream: true, includeUsage: true });
  });

  it('reads roles and content parts; developer is system, refusal text is text', () => {
    const chat = parseChatRequest(
      {
        messages: [
          { role: 'developer', content: 'be brief' },
          user([{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,AA==', detail: 'low' } }]),
          { role: 'assistant', content: [{ type: 'refusal', refusal: 'no' }] },
          { role: 'assistant', content: null },
          user('b'),
        ],
      },
      limits,
    );
    expect(chat.turns).toEqual([
      { role: 'system', parts: [{ type: 'text', text: 'be brief' }] },
      { role: 'user', parts: [{ type: 'text', text: 'a' }, { type: 'image', url: 'data:image/png;base64,AA==' }] },
      { role: 'assistant', parts: [{ type: 'text', text: 'no' }] },
      { role: 'assistant', parts: [] },
      { role: 'user', parts: [{ type: 'text', text: 'b' }] },
    ]);
    expect(chat.imageCount).toBe(1);
  });

  it('refuses what it cannot honour, naming the parameter', () => {
    const image = { type: 'image_url', image_url: { url: 'data:,' } };
    const cases: Array<[unknown, string | null, string | null]> = [
      [[], null, 'invalid_json'],
      [{ messages: [] }, 'messages', 'invalid_value'],
      [{ messages: [user('x')], model: 3 }, 'model', 'invalid_value'],
      [{ messages: [{ role: 'tool', content: 'x' }] }, 'messages[0].role', 'unsupported_value'],
      [{ messages: [{ role: 'wizard', content: 'x' }] }, 'messages[0].role', 'invalid_value'],
      [{ messages: [{ role: 'system', content: [image] }, user('x')] }, 'messages[0].content[0]', 'invalid_value'],
      [{ messages: [user([image, image, image])] }, 'messages[0].content', 'too_many_images'],
      [{ messages: [user([{ type: 'input_audio', input_audio: {} }])] }, 'messages[0].content[0].type', 'unsupported_value'],
      [{ messages: [user('x')], top_p: 1.5 }, 'top_p', 'invalid_value'],
      [{ messages: [user('x')], max_tokens: 0 }, 'max_tokens', 'invalid_value'],
      [{ messages: [user('x')], max_tokens: 2.5 }, 'max_tokens', 'invalid_value'],
      [{ messages: [user('x')], seed: 'abc' }, 'seed', 'invalid_value'],
      [{ messages: [user('x')], stop: ['a', 'b', 'c', 'd', 'e'] }, 'stop', 'invalid_value'],
      [{ messages: [user('x')], presence_penalty: -0.5 }, 'presence_penalty', 'unsupported_parameter'],
      [{ messages: [user('x')], logprobs: true }, 'logprobs', 'unsupported_parameter'],
      [{ messages: [user('x')], response_format: { type: 'json_object' } }, 'response_format', 'unsupported_parameter'],
      [{ messages: [user('x')], stream: 'yes' }, 'stream', 'invalid_value'],
    ];
    for (const [body, param, code] of cases) {
      const error = refusal(body);
      expect(error.status, JSON.stringify(body)).toBe(400);
      expect(error.param, JSON.stringify(body)).toBe(param);
      expect(error.code, JSON.stringify(body)).toBe(code);
    }
    // accepted no-ops
    expect(() => parseChatRequest({ messages: [user('x')], tools: [], tool_choice: 'none', response_format: { type: 'text' } }, limits)).not.toThrow();
  });
});

describe('apiErrorFrom', () => {
  it('gives each failure its status, code and Retry-After', () => {
    const cases: Array<[unknown, number, string, number | undefined]> = [
      [new VistyleError('IMAGE_CORRUPT', 'truncated'), 400, 'invalid_image', undefined],
      [new VistyleError('IMAGE_TOO_LARGE', 'big'), 413, 'image_too_large', undefined],
      [new VistyleError('PROMPT_TOO_LONG', 'long', { details: { maxImages: 3, imageCount: 5 } }), 400, 'too_many_images', undefined],
      [new VistyleError('PROMPT_TOO_LONG', 'long', { details: { maxImages: 3, imageCount: 1 } }), 400, 'context_length_exceeded', undefined],
      [new VistyleError('STYLE_UNKNOWN', 'x', { details: { style: 'pirate' } }), 404, 'model_not_found', undefined],
      [new LimitError('QUEUE_FULL', 'full', 'queue-full', { waiting: 9 }), 429, 'queue_full', 10],
      [new LimitError('RATE_LIMITED', 'fast', 'per-minute', { retryAfterMs: 12_300 }), 429, 'rate_limit_exceeded', 13],
      [new VistyleError('SHUTTING_DOWN', 'bye'), 503, 'shutting_down', 30],
      [new VistyleError('ENGINE_CRASHED', 'oom'), 503, 'engine_restarting', 5],
      [new VistyleError('TIMEOUT', 'slow'), 504, 'timeout', undefined],
      [new Error('secret internals'), 500, 'internal_error', undefined],
    ];
    for (const [error, status, code, retryAfter] of cases) {
      const mapped = apiErrorFrom(error);
      expect([mapped.status, mapped.code, mapped.retryAfter], code).toEqual([status, code, retryAfter]);
    }
    expect(apiErrorFrom(new Error('secret internals')).message).not.toContain('secret');
    expect(apiErrorFrom(new VistyleError('PROMPT_TOO_LONG', 'long', { details: { maxImages: 3, imageCount: 5 } })).message).toMatch(/has 5; at most 3 fit/);
  });
});
