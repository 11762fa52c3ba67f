// `vistyle data make`: for each input row {url, caption}, ask an OpenAI-compatible chat API to pose
// one question about the photo and answer it in a style, and append `{question, ans, url, caption,
// style}` to a JSONL file. bottleneck bounds concurrency (and, optionally, requests per minute);
// failures are retried with backoff (429 waits for the server's Retry-After, and pauses every
// request, since the limit is the key's); a re-run skips the urls already in the output.
import Bottleneck from 'bottleneck';
import cliProgress from 'cli-progress';
import { VistyleError } from '../../src/errors.js';
import { moduleLogger, type Logger } from '../../src/log.js';
import type { Style } from '../../src/styles/types.js';
import { ChatApiError, createChatCompletion, type ChatApiConfig, type TokenUsage } from './chat-api.js';
import { JsonlAppender, readDoneUrls } from './dataset.js';
import { extractStyledQa } from './extract.js';
import { readInputRows, type InputRow } from './input.js';
import { dataMakerMessages } from './prompt.js';

export const DEFAULT_DATA_API_BASE = 'https://api.deepseek.com';
export const DEFAULT_DATA_API_MODEL = 'deepseek-chat';
/** Where the key comes from, first set wins. */
export const DATA_API_KEY_ENVS = ['VISTYLE_DATA_API_KEY', 'DEEPSEEK_API_KEY', 'OPENAI_API_KEY'] as const;

/** The key and the variable it came from (first set wins). */
export function dataApiKeySource(env: NodeJS.ProcessEnv = process.env): { key: string; env: (typeof DATA_API_KEY_ENVS)[number] } | undefined {
  for (const name of DATA_API_KEY_ENVS) {
    const value = env[name]?.trim();
    if (value) return { key: value, env: name };
  }
  return undefined;
}

export interface ProgressReporter {
  start(total: number): void;
  update(state: ProgressState): void;
  stop(): void;
}

export interface ProgressState {
  done: number;
  made: number;
  failed: number;
  skipped: number;
  tokens: number;
}

export interface MakeDataOptions {
  input: string;
  output: string;
  style: Style;
  api: ChatApiConfig;
  /** Requests in flight at once (default 4). */
  concurrency?: number;
  /** Only the first N rows of the input are considered (done ones are still skipped). */
  limit?: number;
  /** At most this many requests started per minute (default: no limit). */
  requestsPerMinute?: number;
  /** Tries per row for API failures (default 5); bad replies get at most 3. */
  maxAttempts?: number;
  /** First retry delay; doubles each time up to retryMaxMs (defaults 1 s and 60 s). */
  retryBaseMs?: number;
  retryMaxMs?: number;
  /** Longest wait honoured from a Retry-After header (default 5 min). */
  maxRetryAfterMs?: number;
  temperature?: number;
  /** Ask for response_format json_object (default true; dropped if the server refuses it). */
  jsonObject?: boolean;
  /** Rows that failed every try go here as JSONL (default `<output>.failed.jsonl`; null: nowhere). */
  failuresFile?: string | null;
  progress?: ProgressReporter | null;
  signal?: AbortSignal;
  logger?: Logger;
}

export interface RowFailure {
  url: string;
  line: number;
  error: string;
}

export interface MakeDataSummary {
  output: string;
  made: number;
  failed: number;
  /** Rows already in the output (or repeated in the input). */
  skipped: number;
  /** Input rows that could not be used (no url, no caption, bad JSON). */
  invalid: number;
  usage: TokenUsage;
  /** API requests sent, including retries. */
  requests: number;
  elapsedMs: number;
  /** The first few failures. */
  failures: RowFailure[];
  /** Set when the run stopped early (a fatal API error, or cancelled). */
  stoppedBecause: string | null;
}

const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });

/** Rows the run will look at (for the progress bar's total). */
export async function countInputRows(file: string, limit?: number): Promise<number> {
  let count = 0;
  for await (const _item of readInputRows(file)) {
    count++;
    if (limit !== undefined && count >= limit) break;
  }
  return count;
}

export async function makeStyledData(options: MakeDataOptions): Promise<MakeDataSummary> {
  const started = Date.now();
  const log = options.logger ?? moduleLogger('data');
  const concurrency = Math.max(1, Math.floor(options.concurrency ?? 4));
  const maxAttempts = Math.max(1, options.maxAttempts ?? 5);
  const retryBaseMs = options.retryBaseMs ?? 1000;
  const retryMaxMs = options.retryMaxMs ?? 60_000;
  const maxRetryAfterMs = options.maxRetryAfterMs ?? 300_000;
  const failuresFile = options.failuresFile === undefined ? `${options.output}.failed.jsonl` : options.failuresFile;
  dataMakerMessages(options.style, 'check'); // fails early when the style has no dataPrompt

  const summary: MakeDataSummary = {
    output: options.output,
    made: 0,
    failed: 0,
    skipped: 0,
    invalid: 0,
    usage: { promptTokens: 0, completionTokens: 0, totalTokens: 0 },
    requests: 0,
    elapsedMs: 0,
    failures: [],
    stoppedBecause: null,
  };
  const done = readDoneUrls(options.output);
  const appender = new JsonlAppender(options.output);
  const failures = failuresFile ? new JsonlAppender(failuresFile) : null;
  const limiter = new Bottleneck({
    maxConcurrent: concurrency,
    minTime: options.requestsPerMinute ? Math.ceil(60_000 / options.requestsPerMinute) : 0,
  });
  const stop = new AbortController();
  const onAbort = (): void => {
    summary.stoppedBecause ??= 'cancelled';
    stop.abort();
  };
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let jsonObject = options.jsonObject ?? true;
  let cooldownUntil = 0; // set by a 429: every request waits until then
  let processed = 0;
  const progress = options.progress ?? null;
  const report = (): void =>
    progress?.update({
      done: processed,
      made: summary.made,
      failed: summary.failed,
      skipped: summary.skipped,
      tokens: summary.usage.totalTokens,
    });

  const addUsage = (usage: TokenUsage | null | undefined): void => {
    if (!usage) return;
    summary.usage.promptTokens += usage.promptTokens;
    summary.usage.completionTokens += usage.completionTokens;
    summary.usage.totalTokens += usage.totalTokens;
  };

  const request = async (row: InputRow): Promise<string> => {
    const wait = cooldownUntil - Date.now();
    if (wait > 0) await sleep(wait, stop.signal);
    if (stop.signal.aborted) throw new ChatApiError('cancelled', 'client');
    summary.requests++;
    try {
      const response = await createChatCompletion(
        options.api,
        { messages: dataMakerMessages(options.style, row.caption), temperature: options.temperature ?? 1.0, jsonObject },
        stop.signal,
      );
      addUsage(response.usage);
      return response.content;
    } catch (error) {
      addUsage((error as { usage?: TokenUsage }).usage);
      // Some OpenAI-compatible servers do not know response_format: ask once more without it.
      if (error instanceof ChatApiError && error.kind === 'client' && jsonObject && /response_format|json_object/i.test(error.message)) {
        log.warn({ status: error.status }, 'the data API does not accept response_format json_object; asking without it');
        jsonObject = false;
        return request(row);
      }
      throw error;
    }
  };

  const makeRow = async (row: InputRow): Promise<void> => {
    let apiTries = 0;
    let replyTries = 0;
    let lastError = '';
    for (;;) {
      if (stop.signal.aborted) return;
      let delay = 0;
      try {
        apiTries++;
        const reply = await limiter.schedule(() => request(row));
        const extracted = extractStyledQa(reply);
        if (extracted.ok) {
          appender.append({
            question: extracted.value.question,
            ans: extracted.value.answer,
            url: row.url,
            caption: row.caption,
            style: options.style.id,
          });
          summary.made++;
          return;
        }
        replyTries++;
        apiTries--; // a bad reply counts against its own, smaller budget
        lastError = extracted.error;
        if (replyTries >= Math.min(3, maxAttempts)) break;
        log.debug({ url: row.url, error: lastError }, 'unusable reply; asking again');
      } catch (error) {
        if (stop.signal.aborted) return;
        if (!(error instanceof ChatApiError)) throw error;
        lastError = error.message;
        if (error.fatal) {
          const check = error.kind === 'quota' ? "the account's balance or quota" : 'the key, --api-base and --api-model';
          summary.stoppedBecause ??= `the data API refused the request (${error.message}); check ${check}`;
          stop.abort();
          return;
        }
        if (!error.retryable || apiTries >= maxAttempts) break;
        const backoff = Math.min(retryMaxMs, retryBaseMs * 2 ** (apiTries - 1));
        delay = error.retryAfterMs !== undefined ? Math.min(maxRetryAfterMs, Math.max(error.retryAfterMs, 0)) : backoff * (0.75 + Math.random() * 0.5);
        if (error.kind === 'rate-limit') cooldownUntil = Math.max(cooldownUntil, Date.now() + delay);
        log.info({ url: row.url, error: error.message, retryInMs: Math.round(delay), attempt: apiTries }, 'data API request failed; retrying');
      }
      if (delay > 0) await sleep(delay, stop.signal);
    }
    summary.failed++;
    const failure = { url: row.url, line: row.line, error: lastError };
    if (summary.failures.length < 20) summary.failures.push(failure);
    failures?.append(failure);
    log.warn(failure, 'row failed');
  };

  const inFlight = new Set<Promise<void>>();
  let fatal: unknown = null;
  try {
    progress?.start(await countInputRows(options.input, options.limit));
    let seen = 0;
    const seenThisRun = new Set<string>();
    for await (const item of readInputRows(options.input)) {
      if (stop.signal.aborted) break;
      if (options.limit !== undefined && seen >= options.limit) break;
      seen++;
      if ('problem' in item) {
        summary.invalid++;
        processed++;
        log.warn({ line: item.problem.line, problem: item.problem.message }, 'skipping an unusable input row');
        report();
        continue;
      }
      const { row } = item;
      if (done.has(row.url) || seenThisRun.has(row.url)) {
        summary.skipped++;
        processed++;
        report();
        continue;
      }
      seenThisRun.add(row.url);
      const task = makeRow(row)
        .catch((error: unknown) => {
          fatal ??= error;
          stop.abort();
        })
        .finally(() => {
          processed++;
          inFlight.delete(task);
          report();
        });
      inFlight.add(task);
      // Back-pressure: read the input only as fast as rows are finished.
      while (inFlight.size >= concurrency * 2) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
  } finally {
    await Promise.allSettled(inFlight);
    options.signal?.removeEventListener('abort', onAbort);
    await limiter.stop({ dropWaitingJobs: true }).catch(() => undefined);
    appender.close();
    failures?.close();
    report();
    progress?.stop();
  }
  if (fatal) throw fatal;
  summary.elapsedMs = Date.now() - started;
  return summary;
}

/** A cli-progress bar on stderr. */
export function terminalProgress(): ProgressReporter {
  const bar = new cliProgress.SingleBar(
    {
      format: ' {bar} {value}/{total} rows | made {made} | failed {failed} | skipped {skipped} | {tokens} tokens | ETA {eta_formatted}',
      stream: process.stderr,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  return {
    start: (total) => bar.start(total, 0, { made: 0, failed: 0, skipped: 0, tokens: 0 }),
    update: (state) => bar.update(state.done, { made: state.made, failed: state.failed, skipped: state.skipped, tokens: state.tokens }),
    stop: () => bar.stop(),
  };
}

/** Settings from flags and the environment, checked. */
export function resolveDataApiConfig(flags: { apiBase?: string; apiModel?: string; timeoutMs?: number }, env = process.env): ChatApiConfig {
  const source = dataApiKeySource(env);
  if (!source) {
    throw new VistyleError('CONFIG_INVALID', `no API key for the data API: set ${DATA_API_KEY_ENVS.join(', or ')}`);
  }
  const apiKey = source.key;
  const givenBase = flags.apiBase ?? (env.VISTYLE_DATA_API_BASE?.trim() || undefined);
  if (source.env === 'OPENAI_API_KEY' && givenBase === undefined) {
    // An OpenAI key would be sent to DeepSeek (the default base): a leak to a third party that can
    // only end in a 401. The fallback applies once the operator names the API it is for.
    throw new VistyleError(
      'CONFIG_INVALID',
      `OPENAI_API_KEY is the only data API key set, and the default API is ${DEFAULT_DATA_API_BASE}: ` +
        'pass --api-base (e.g. https://api.openai.com/v1) and --api-model, or set VISTYLE_DATA_API_KEY or DEEPSEEK_API_KEY',
    );
  }
  const baseUrl = givenBase ?? DEFAULT_DATA_API_BASE;
  try {
    const url = new URL(baseUrl);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error('not http(s)');
  } catch {
    throw new VistyleError('CONFIG_INVALID', `--api-base must be an http(s) URL, not "${baseUrl}"`);
  }
  return {
    baseUrl,
    apiKey,
    model: flags.apiModel ?? env.VISTYLE_DATA_API_MODEL ?? DEFAULT_DATA_API_MODEL,
    timeoutMs: flags.timeoutMs ?? 120_000,
  };
}
