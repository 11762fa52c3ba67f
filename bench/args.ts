// Small helpers shared by the bench's processes: flags, onnxruntime session options.
import type * as ort from 'onnxruntime-node';

/** `--name value` from argv, or the fallback. */
export function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] !== undefined && !process.argv[i + 1]!.startsWith('--') ? process.argv[i + 1]! : fallback;
}

export function flag(name: string): boolean {
  return process.argv.includes(`--${name}`);
}

export function list(name: string, fallback: string): string[] {
  return arg(name, fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

/** CPU session options with the bench's thread count (the machine figures are host figures). */
export function cpuSessionOptions(threads: number): ort.InferenceSession.SessionOptions {
  return { intraOpNumThreads: threads, interOpNumThreads: 1, logSeverityLevel: 3 };
}

export const median = (values: number[]): number => {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
