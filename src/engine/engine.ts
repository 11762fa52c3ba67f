// The engine's entry point for the rest of vistyle.
//
//   const engine = await createEngine({ modelDir });          // model in a worker thread (the bot)
//   const stream = engine.generate({ images: [photo], messages: [{ role: 'user', content: [{ type: 'image', image: 0 }, { type: 'text', text: 'What is it?' }] }] }, { signal });
//   for await (const delta of stream) process.stdout.write(delta);
//   const result = await stream.result;                         // text, tokens, timings, finishReason
//   await engine.close();
//
// createLocalEngine runs the same engine on the calling thread (the CLI, the worker itself).
export { createEngine, WorkerEngine, type WorkerEngineOptions, type WorkerGenerateOptions } from './worker-client.js';
export { createLocalEngine, LocalEngine, DEFAULT_MAX_CONTEXT_TOKENS, type LocalEngineOptions, type LocalGenerateOptions } from './local-engine.js';
export type { LoraLoader } from './lora.js';
export type * from './types.js';
