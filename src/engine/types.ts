// The engine's public contract: what the bot, the scheduler and the CLI see. The engine itself
// runs in a worker thread (src/engine/worker*.ts); these types cross that boundary as plain data.

/** How the next token is chosen. `greedy` is plain argmax over every logit with no processors. */
export interface SamplingOptions {
  greedy: boolean;
  temperature: number;
  /** 0 disables top-k. */
  topK: number;
  /** 1 disables nucleus sampling. */
  topP: number;
  /** 1 disables the repetition penalty (CTRL-style: divide positive logits, multiply negative). */
  repetitionPenalty: number;
  /** 0 disables the no-repeat n-gram ban. */
  noRepeatNgramSize: number;
  maxNewTokens: number;
  /** Generation stops when the decoded text contains one of these; the stop string is not returned. */
  stopStrings: string[];
  /** Seed for the sampler's RNG; a fixed seed reproduces the same answer. */
  seed?: number;
}

/** One piece of a message: text, or a picture (`image` indexes GenerateRequest.images). */
export type MessagePart = { type: 'text'; text: string } | { type: 'image'; image: number };

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant';
  /** Plain text, or parts in the order the user gave them; `image` indexes GenerateRequest.images.
   *  The checkpoint's chat template decides where pictures go (the hub template: all of a
   *  message's pictures first, then its text parts joined with nothing between). */
  content: string | MessagePart[];
}

/** A PEFT LoRA adapter folder (adapter_config.json + adapter_model.safetensors). */
export interface LoraRef {
  path: string;
  /** Overrides the adapter's own lora_alpha / r. */
  scale?: number;
}

export interface GenerateRequest {
  /** Encoded pictures (JPEG, PNG, WebP, GIF first frame), referenced by image parts. The same
   *  index used twice is two occurrences (two feature blocks). */
  images?: Uint8Array[];
  /** The whole conversation, oldest first, ending with the user turn to answer. */
  messages: ChatMessage[];
  /** LoRA adapter for this request only; null/undefined runs the base model. */
  lora?: LoraRef | null;
  sampling?: Partial<SamplingOptions>;
}

/**
 * eos: the model ended the answer. stop: a stop string appeared (not returned), or the loop guard
 * ended a sampled answer stuck repeating itself. length: maxNewTokens, or the KV cache is full.
 * cancelled: the request's AbortSignal fired (see Engine.generate).
 */
export type FinishReason = 'eos' | 'stop' | 'length' | 'cancelled';

export interface GenerationTimings {
  imageMs: number; // decode + resize + normalise
  visionMs: number; // vision graph
  prefillMs: number; // embeddings + decoder over the prompt
  decodeMs: number; // every step after the first token
  totalMs: number;
}

export interface GenerationResult {
  text: string;
  /** Generated token ids (without the prompt; without the EOS token). */
  tokens: number[];
  promptTokens: number;
  /** From the start of the request to the first generated token. */
  ttftMs: number;
  /** Generated tokens after the first, per second of decoding. */
  tokensPerSecond: number;
  finishReason: FinishReason;
  timings: GenerationTimings;
  /** Prompt positions reused from the prefix cache instead of prefilled (0 without a hit). */
  cachedPromptTokens: number;
  /** Picture occurrences in the prompt (each cost imageTokens rows). */
  imageCount: number;
  /** Oldest messages left out so that the conversation fits the context (0 when all fit). */
  droppedMessages: number;
}

/**
 * Text deltas as they are generated. Never splits a UTF-8 character. Iterating it drives the
 * request; `result` settles when the generation ends (rejects with a VistyleError on failure).
 */
export interface GenerationStream extends AsyncIterable<string> {
  readonly result: Promise<GenerationResult>;
}

export type ExecutionProvider = 'cpu' | 'cuda';

export interface EngineOptions {
  /** A folder written by `vistyle model build` (holds vistyle-model.json). */
  modelDir: string;
  provider?: ExecutionProvider;
  /** CUDA device id. */
  deviceId?: number;
  /** onnxruntime intra-op threads (0 = onnxruntime's default). */
  threads?: number;
  /** Longest conversation (prompt + answer) in tokens; the KV cache is preallocated for it. */
  maxContextTokens?: number;
  /** Images with more pixels than this are refused before decoding. */
  maxImagePixels?: number;
  /** Encoded images larger than this are refused. */
  maxImageBytes?: number;
  /** Requests decoded together (batch rows of the KV cache); default 4 (VISTYLE_ENGINE_SLOTS). */
  slots?: number;
  /** Bytes the prefix (KV) cache may hold; 0 turns prefix reuse off; default sized from free memory (VISTYLE_PREFIX_CACHE_MB). */
  prefixCacheBytes?: number;
  /** The engine refuses a configuration or work that would need more memory than this (VISTYLE_MAX_MEMORY_MB). */
  maxMemoryBytes?: number;
  /** Longest prefill chunk run while other requests decode (default 256 tokens). */
  prefillChunk?: number;
}

export interface ModelInfo {
  modelDir: string;
  dtype: 'fp32' | 'fp16' | 'int8' | 'int4';
  provider: ExecutionProvider;
  maxContextTokens: number;
  imageSize: number;
  imageTokens: number;
  eosTokenIds: number[];
  /** LoRA targets the graphs accept (empty when built with --no-lora). */
  loraTargets: string[];
  /** Batch rows the engine decodes together: requests it runs at once (the scheduler's slots). */
  slots: number;
}

export interface Engine {
  readonly info: ModelInfo;
  /**
   * Starts answering at once: up to `info.slots` requests decode together, later ones wait inside
   * the engine (the scheduler keeps that from happening by using info.slots as its own slots).
   * Cancellation: when `signal` aborts, the engine stops at the next decode step (or before the
   * request starts, if it is still queued) and frees the KV cache; the stream then ENDS normally
   * and `result` RESOLVES with finishReason 'cancelled' and the text so far. It never rejects with
   * CANCELLED. Failures reject `result` (and make iteration throw) with a VistyleError, e.g.
   * IMAGE_*, QUESTION_EMPTY, PROMPT_TOO_LONG, ADAPTER_INVALID, ENGINE_CRASHED (the worker died;
   * the engine restarts it for the next request), SHUTTING_DOWN (after close()).
   */
  generate(request: GenerateRequest, options?: { signal?: AbortSignal }): GenerationStream;
  close(): Promise<void>;
}
