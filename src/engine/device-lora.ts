// LoRA inputs on the device: the engine's per-row stacks (lora-batch.ts) are uploaded once per
// batch composition and fed from the GPU, so a decode step copies no adapter weights from host
// memory (a rank-1 "no adapter" stack alone is ~0.4 MB per row per step for the full model).
import type * as ort from 'onnxruntime-node';
import type { LoadedLora } from './generation-parts.js';
import { disposeAll, type DeviceGraphs } from './device-graphs.js';
import type { LoraFeeds } from './lora-batch.js';

export class DeviceLoraFeeds {
  /** Device copies by batch composition, most recently used last. */
  private readonly entries = new Map<string, Promise<Record<string, ort.Tensor>>>();

  constructor(
    private readonly host: LoraFeeds,
    private readonly graphs: DeviceGraphs,
    /** Compositions kept (the engine runs one decoder call at a time, so an evicted one is idle). */
    private readonly size = 8,
  ) {}

  touchesVision(lora: LoadedLora | null | undefined): boolean {
    return this.host.touchesVision(lora);
  }

  /** The vision graph runs once per picture: its LoRA inputs stay host tensors. */
  vision(lora: LoadedLora | null | undefined): Record<string, ort.Tensor> {
    return this.host.vision(lora);
  }

  decoder(batch: readonly (LoadedLora | null)[]): Promise<Record<string, ort.Tensor>> {
    const key = batch.map((lora) => lora?.key ?? '').join('\u0000');
    let entry = this.entries.get(key);
    if (entry) {
      this.entries.delete(key);
    } else {
      const feeds = this.host.decoder(batch);
      const names = Object.keys(feeds);
      entry = this.graphs.upload(names.map((n) => feeds[n]!)).then((tensors) => Object.fromEntries(names.map((n, i) => [n, tensors[i]!])));
      entry.catch(() => this.entries.delete(key));
    }
    this.entries.set(key, entry);
    while (this.entries.size > this.size) {
      const [oldest, tensors] = this.entries.entries().next().value as [string, Promise<Record<string, ort.Tensor>>];
      this.entries.delete(oldest);
      void tensors.then((t) => disposeAll(Object.values(t)), () => undefined);
    }
    return entry;
  }

  clear(): void {
    for (const tensors of this.entries.values()) void tensors.then((t) => disposeAll(Object.values(t)), () => undefined);
    this.entries.clear();
    this.host.clear();
  }
}
