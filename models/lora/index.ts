// LoRA adapters in the Hugging Face PEFT format: read (for the engine) and write (for tests; the
// Python trainer in models/training writes the same format).
export * from './names.js';
export * from './peft-config.js';
export * from './loader.js';
export * from './writer.js';
