// The body of POST /v1/chat/completions, checked and turned into what vistyle needs. Every
// refusal is an ApiError (400) that names the parameter, the way OpenAI's own errors do.
//   messages        system (and developer) / user / assistant; content a string or parts:
//                   `text` and `image_url` (data: or https: URL; pictures only in user messages)
//   model           a style: `vistyle/grumpy`, `grumpy`, a display name, or `vistyle` (= plain)
//   temperature     0..2           -> sampler temperature (0 picks the likeliest token)
//   top_p           0..1           -> nucleus sampling (0 keeps the likeliest token)
//   max_tokens / max_completion_tokens -> longest answer in tokens
//   stop            string or up to 4 strings -> stop strings (not returned)
//   seed            integer        -> the sampler's seed (same seed, same answer)
//   frequency_penalty / presence_penalty: only 0 (vistyle's sampler has a multiplicative
//                   repetition penalty, set by each style; OpenAI's additive penalties have no
//                   faithful mapping onto it, so other values are refused rather than approximated)
//   n               only 1; tools, functions, logprobs and JSON response formats are refused
//   stream, stream_options.include_usage
// Other fields (user, metadata, store, ...) are ignored.
import type { SamplingOptions } from '../engine/types.js';
import { ApiError, badRequest } from './api-error.js';

export type ChatPart = { type: 'text'; text: string } | { type: 'image'; url: string };

export interface ChatTurn {
  role: 'system' | 'user' | 'assistant';
  parts: ChatPart[];
}

export interface ChatRequest {
  model: string;
  turns: ChatTurn[];
  stream: boolean;
  includeUsage: boolean;
  sampling: Partial<SamplingOptions>;
  /** Pictures in the whole conversation. */
  imageCount: number;
}

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const given = (value: unknown) => value !== undefined && value !== null;

function number(body: Json, name: string, min: number, max: number): number | undefined {
  const value = body[name];
  if (!given(value)) return undefined;
  if (typeof value !== 'number' || !Number.isFinite(value)) throw badRequest(`${name} must be a number`, name);
  if (value < min || value > max) throw badRequest(`${name} must be between ${min} and ${max} (got ${value})`, name);
  return value;
}

function integer(body: Json, name: string, min: number, max: number): number | undefined {
  const value = number(body, name, min, max);
  if (value !== undefined && !Number.isInteger(value)) throw badRequest(`${name} must be a whole number`, name);
  return value;
}

/** Checks the request body; `maxImagesPerMessage` is the VISTYLE_MAX_IMAGES_PER_MESSAGE limit. */
export function parseChatRequest(body: unknown, limits: { maxImagesPerMessage: number }): ChatRequest {
  if (!isObject(body)) throw badRequest('The request body must be a JSON object.', null, 'invalid_json');
  const model = body.model === undefined ? 'vistyle' : body.model;
  if (typeof model !== 'string' || model.trim() === '') throw badRequest('model must be a non-empty string', 'model');

  const turns = parseMessages(body.messages, limits.maxImagesPerMessage);
  const imageCount = turns.reduce((sum, turn) => sum + turn.parts.filter((part) => part.type === 'image').length, 0);

  const stream = body.stream;
  if (given(stream) && typeof stream !== 'boolean') throw badRequest('stream must be true or false', 'stream');
  const options = body.stream_options;
  if (given(options) && !isObject(options)) throw badRequest('stream_options must be an object', 'stream_options');
  const includeUsage = isObject(options) && options.include_usage === true;

  const n = integer(body, 'n', 1, 128);
  if (n !== undefined && n !== 1) throw badRequest('n must be 1: vistyle gives one answer per request', 'n', 'unsupported_value');
  for (const name of ['frequency_penalty', 'presence_penalty']) {
    const value = number(body, name, -2, 2);
    if (value !== undefined && value !== 0) {
      throw badRequest(
        `${name} is not supported (only 0): vistyle's sampler has a multiplicative repetition penalty, set per style, and no additive ${name.replace('_', ' ')}`,
        name,
        'unsupported_parameter',
      );
    }
  }
  for (const name of ['tools', 'functions']) {
    const value = body[name];
    if (given(value) && !(Array.isArray(value) && value.length === 0)) throw badRequest(`${name} are not supported`, name, 'unsupported_parameter');
  }
  if (given(body.tool_choice) && body.tool_choice !== 'none') throw badRequest('tool_choice is not supported', 'tool_choice', 'unsupported_parameter');
  if (body.logprobs === true || given(body.top_logprobs)) throw badRequest('logprobs are not supported', 'logprobs', 'unsupported_parameter');
  if (given(body.response_format) && !(isObject(body.response_format) && body.response_format.type === 'text')) {
    throw badRequest('only response_format {"type": "text"} is supported', 'response_format', 'unsupported_parameter');
  }

  const sampling: Partial<SamplingOptions> = {};
  const temperature = number(body, 'temperature', 0, 2);
  if (temperature !== undefined) sampling.temperature = temperature;
  const topP = number(body, 'top_p', 0, 1);
  // The sampler's top-p is in (0, 1]; OpenAI's 0 means "only the likeliest token".
  if (topP !== undefined) sampling.topP = Math.max(topP, 1e-9);
  const maxTokens = integer(body, 'max_completion_tokens', 1, 1_000_000) ?? integer(body, 'max_tokens', 1, 1_000_000);
  if (maxTokens !== undefined) sampling.maxNewTokens = maxTokens;
  const seed = integer(body, 'seed', Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (seed !== undefined) sampling.seed = seed;
  const stop = body.stop;
  if (given(stop)) {
    const list = typeof stop === 'string' ? [stop] : stop;
    if (!Array.isArray(list) || list.length > 4 || list.some((s) => typeof s !== 'string')) {
      throw badRequest('stop must be a string or an array of up to 4 strings', 'stop');
    }
    const stops = (list as string[]).filter((s) => s.length > 0);
    if (stops.length > 0) sampling.stopStrings = stops;
  }

  return { model: model.trim(), turns, stream: stream === true, includeUsage, sampling, imageCount };
}

function parseMessages(value: unknown, maxImagesPerMessage: number): ChatTurn[] {
  if (!Array.isArray(value) || value.length === 0) throw badRequest('messages must be a non-empty array', 'messages');
  const turns = value.map((message, index): ChatTurn => {
    const param = `messages[${index}]`;
    if (!isObject(message)) throw badRequest(`${param} must be an object`, param);
    const role = message.role;
    if (role === 'tool' || role === 'function') throw badRequest(`${param}: ${role} messages are not supported (vistyle has no tools)`, `${param}.role`, 'unsupported_value');
    if (role !== 'system' && role !== 'developer' && role !== 'user' && role !== 'assistant') {
      throw badRequest(`${param}.role must be system, user or assistant`, `${param}.role`);
    }
    const parts = parseContent(message.content, `${param}.content`, role === 'user');
    const images = parts.filter((part) => part.type === 'image').length;
    if (images > maxImagesPerMessage) {
      throw new ApiError(400, `Too many pictures: ${param} has ${images}; at most ${maxImagesPerMessage} per message.`, 'invalid_request_error', 'too_many_images', `${param}.content`);
    }
    return { role: role === 'developer' ? 'system' : role, parts };
  });
  const last = turns[turns.length - 1]!;
  if (last.role !== 'user') throw badRequest('the last message must be a user message (the question to answer)', `messages[${turns.length - 1}].role`);
  return turns;
}

function parseContent(content: unknown, param: string, imagesAllowed: boolean): ChatPart[] {
  if (content === null || content === undefined) return [];
  if (typeof content === 'string') return [{ type: 'text', text: content }];
  if (!Array.isArray(content)) throw badRequest(`${param} must be a string or an array of content parts`, param);
  return content.map((part, index): ChatPart => {
    const where = `${param}[${index}]`;
    if (!isObject(part)) throw badRequest(`${where} must be an object`, where);
    if (part.type === 'text' || part.type === 'refusal') {
      const text = part.type === 'text' ? part.text : part.refusal;
      if (typeof text !== 'string') throw badRequest(`${where}.${part.type} must be a string`, where);
      return { type: 'text', text };
    }
    if (part.type === 'image_url') {
      if (!imagesAllowed) throw badRequest(`${where}: pictures are only allowed in user messages`, where);
      const image = part.image_url;
      const url = typeof image === 'string' ? image : isObject(image) ? image.url : undefined;
      if (typeof url !== 'string' || url === '') throw badRequest(`${where}.image_url.url must be a data: or https: URL`, `${where}.image_url`);
      return { type: 'image', url };
    }
    throw badRequest(`${where}: content parts of type ${JSON.stringify(part.type)} are not supported (use text and image_url)`, `${where}.type`, 'unsupported_value');
  });
}
