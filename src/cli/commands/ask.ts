// `vistyle ask [--model DIR] --image FILE [--image FILE ...] [--style ID] [--styles-file FILE] [--adapter DIR] [--max-tokens N] [--temperature T] [--greedy] [--raw] [--json] "question"`
// Streams the answer to stdout. The engine runs on this thread (a one-shot CLI has no heartbeats
// to keep alive). Style, adapter and raw mode are resolved by src/styles (resolveAskRequest), the
// same way the bot resolves them.
//   --image   repeatable: every picture in the order given, then the question, in one user turn
//   --raw     no system prompt, no examples, no style adapter: exactly that one user turn
//             rendered by the checkpoint's chat template
//   --greedy  plain argmax over all logits: no penalties, no other processors, no stop strings
//   --json    after the streamed text, one JSON object on the last line:
//             {"text","tokens","promptTokens","ttftMs","tokensPerSecond"}
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { loadEngineConfig, loadMediaConfig } from '../../config/config.js';
import { isVistyleError, VistyleError } from '../../errors.js';
import { expandMedia } from '../../media/index.js';
import { createLogger, setRootLogger } from '../../log.js';
import { resolveModelDir } from '../../paths.js';
import { readPeftConfig } from '../../../models/lora/loader.js';
import { resolveAskRequest } from '../../styles/resolve.js';
import { createLocalEngine } from '../../engine/local-engine.js';
import type { ExecutionProvider, GenerateRequest, GenerationResult, SamplingOptions } from '../../engine/types.js';

export interface AskOptions {
  model?: string;
  image: string[];
  maxTokens?: string;
  temperature?: string;
  topP?: string;
  seed?: string;
  greedy?: boolean;
  raw?: boolean;
  json?: boolean;
  provider?: string;
  threads?: string;
  style?: string;
  stylesFile?: string;
  adapter?: string;
}

function parseNumber(flag: string, raw: string | undefined, check: (n: number) => boolean, rule: string): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(value) || !check(value)) {
    throw new VistyleError('CONFIG_INVALID', `${flag} must be ${rule}, got "${raw}"`);
  }
  return value;
}

/** Sampling asked for on the command line, on top of the style's overrides. */
export function samplingFromFlags(options: AskOptions, base: Partial<SamplingOptions>): Partial<SamplingOptions> {
  const sampling: Partial<SamplingOptions> = { ...base };
  const maxNewTokens = parseNumber('--max-tokens', options.maxTokens, (n) => Number.isInteger(n) && n > 0, 'a positive integer');
  const temperature = parseNumber('--temperature', options.temperature, (n) => n >= 0, 'a number >= 0');
  const topP = parseNumber('--top-p', options.topP, (n) => n > 0 && n <= 1, 'a number in (0, 1]');
  const seed = parseNumber('--seed', options.seed, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer');
  if (maxNewTokens !== undefined) sampling.maxNewTokens = maxNewTokens;
  if (temperature !== undefined) sampling.temperature = temperature;
  if (topP !== undefined) sampling.topP = topP;
  if (seed !== undefined) sampling.seed = seed;
  if (options.greedy) {
    // Reproducible and comparable with transformers' greedy generate(): argmax, nothing else.
    Object.assign(sampling, { greedy: true, repetitionPenalty: 1, noRepeatNgramSize: 0, topK: 0, topP: 1, stopStrings: [] });
  }
  return sampling;
}

export function jsonSummary(result: GenerationResult): string {
  return JSON.stringify({
    text: result.text,
    tokens: result.tokens,
    promptTokens: result.promptTokens,
    ttftMs: Number(result.ttftMs.toFixed(2)),
    tokensPerSecond: Number(result.tokensPerSecond.toFixed(2)),
  });
}

async function readImage(path: string): Promise<Uint8Array> {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (error as Error).message;
    throw new VistyleError('IMAGE_MISSING', `cannot read the image ${path}: ${why}`, { cause: error, details: { path } });
  }
  // An empty file is not "no picture": say what is wrong with it instead of the engine's
  // "the conversation shows a picture, but no image was sent".
  if (bytes.byteLength === 0) {
    throw new VistyleError('IMAGE_CORRUPT', `the image ${path} is empty (0 bytes); give a JPEG, PNG, WebP or GIF file`, { details: { path } });
  }
  return bytes;
}

export async function runAsk(question: string, options: AskOptions, verbose: boolean): Promise<void> {
  if (!process.env.VISTYLE_LOG_LEVEL) setRootLogger(createLogger({ level: verbose ? 'debug' : 'warn' }));
  const provider = options.provider;
  if (provider !== undefined && provider !== 'cpu' && provider !== 'cuda' && provider !== 'webgpu') {
    throw new VistyleError('CONFIG_INVALID', `--provider must be cpu, cuda or webgpu, got "${provider}"`);
  }
  const threads = parseNumber('--threads', options.threads, (n) => Number.isInteger(n) && n >= 0, 'a non-negative integer');
  // The bot asks a style's default question for a photo sent alone; on the command line an empty
  // question is a mistake (an unset shell variable, a lost quote), not a request for that default.
  if (question.trim() === '') {
    throw new VistyleError('QUESTION_EMPTY', 'the question is empty: give one, e.g. vistyle ask --image photo.jpg "What is in this picture?"');
  }
  // Every --image in order; an animated GIF/WebP or a short video becomes its frames, as in the bot.
  const media = loadMediaConfig(provider === undefined ? process.env : { ...process.env, VISTYLE_PROVIDER: provider });
  const images: Uint8Array[] = [];
  for (const path of options.image) {
    const expanded = await expandMedia(await readImage(path), {
      frames: media.videoFrames,
      maxSeconds: media.videoMaxSeconds,
      maxVideoBytes: media.videoMaxBytes,
    }).catch((error: unknown) => {
      throw isVistyleError(error) ? new VistyleError(error.code, `${path}: ${error.message}`, { cause: error, details: { ...error.details, path } }) : error;
    });
    for (const picture of expanded.pictures) images.push(picture.bytes);
  }
  // Check everything cheap before loading the model.
  const resolved = resolveAskRequest({
    question,
    images: images.map((_, index) => index),
    raw: options.raw === true,
    ...(options.style === undefined ? {} : { style: options.style }),
    ...(options.stylesFile === undefined ? {} : { stylesFile: options.stylesFile }),
    ...(options.adapter === undefined ? {} : { adapter: options.adapter }),
  });
  const sampling = samplingFromFlags(options, resolved.sampling);
  // A missing or unusable adapter folder is reported now, not after seconds of model loading.
  if (resolved.lora) readPeftConfig(resolved.lora.path);

  // The environment's engine settings (same rules as the bot's config), then the flags.
  const settings = loadEngineConfig(process.env);
  const engine = await createLocalEngine({
    modelDir: resolveModelDir(options.model),
    ...settings,
    // one question: one row, and no prefix cache to fill
    slots: 1,
    prefixCacheBytes: 0,
    ...(provider === undefined ? {} : { provider: provider as ExecutionProvider }),
    ...(threads === undefined ? {} : { threads }),
  });
  const controller = new AbortController();
  const onSigint = (): void => controller.abort();
  process.once('SIGINT', onSigint);
  // The reader of stdout went away (`vistyle ask ... | head -1`): stop generating and end quietly,
  // as a pipe's writer does, instead of dying on an unhandled EPIPE.
  let stdoutError: NodeJS.ErrnoException | undefined;
  const onStdoutError = (error: NodeJS.ErrnoException): void => {
    stdoutError ??= error;
    controller.abort();
  };
  process.stdout.on('error', onStdoutError);
  const write = (text: string): void => {
    if (!stdoutError) process.stdout.write(text);
  };
  try {
    const request: GenerateRequest = { images, messages: resolved.messages, lora: resolved.lora, sampling };
    const stream = engine.generate(request, { signal: controller.signal });
    let last = '';
    for await (const delta of stream) {
      write(delta);
      last = delta;
    }
    const result = await stream.result;
    if (result.text.length > 0 && !last.endsWith('\n')) write('\n');
    if (options.json) write(`${jsonSummary(result)}\n`);
    if (stdoutError) {
      if (stdoutError.code !== 'EPIPE') {
        throw new VistyleError('INTERNAL', `cannot write the answer to stdout: ${stdoutError.code ?? stdoutError.message}`, { cause: stdoutError });
      }
    } else if (result.finishReason === 'cancelled') {
      process.exitCode = 130;
    }
  } finally {
    process.removeListener('SIGINT', onSigint);
    await engine.close();
    process.stdout.removeListener('error', onStdoutError);
  }
}

export function registerAskCommand(program: Command): void {
  program
    .command('ask')
    .description('answer a question about a picture, streaming the answer to stdout')
    .argument('<question>', 'the question about the picture')
    .requiredOption('--image <file>', 'a picture (JPEG, PNG, WebP or GIF); repeat for several, shown in order before the question', (value: string, previous: string[] | undefined) => [...(previous ?? []), value])
    .option('--model <dir>', 'built model folder (default: VISTYLE_MODEL_DIR, then the pulled model)')
    .option('--max-tokens <n>', 'most tokens to generate')
    .option('--temperature <t>', 'sampling temperature (0 = greedy)')
    .option('--top-p <p>', 'nucleus sampling: keep the smallest set of tokens with this much probability')
    .option('--seed <n>', 'seed of the sampler (same seed, same answer)')
    .option('--greedy', 'plain argmax over all logits, no penalties or other processors')
    .option('--raw', 'bare conversation: one user turn, no style (prompt, examples, settings, adapter); an --adapter given still applies')
    .option('--style <id>', 'answer in this style (see `vistyle styles`; any case)')
    .option('--styles-file <path>', 'styles file with more styles (default: VISTYLE_STYLES_FILE)')
    .option('--adapter <dir>', "PEFT LoRA adapter folder to apply instead of the style's (scale from its adapter_config.json)")
    .option('--json', 'print a JSON summary on the last line')
    .option('--provider <cpu|cuda|webgpu>', 'execution provider (default: VISTYLE_PROVIDER, then cpu)')
    .option('--threads <n>', 'onnxruntime intra-op threads (0 = onnxruntime default)')
    .action(async (question: string, options: AskOptions, command: Command) => {
      const verbose = command.optsWithGlobals().verbose === true;
      await runAsk(question, options, verbose);
    });
}
