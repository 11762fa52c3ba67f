// A start-up check of GroupQueryAttention on this WebGPU adapter, and the prefill chunk it allows.
//
// On Mesa's lavapipe (onnxruntime-node 1.30, Mesa 25.0) GroupQueryAttention with 32 or more new
// tokens in one run returns wrong rows (from the 9th query on; it takes the provider's
// flash-attention prefill path there), while up to 31 new tokens, with or without cached
// positions, and every single-token decode step are exact. Whether real GPUs are affected is not
// known here (no GPU in this project's sessions so far), so instead of trusting either, the engine
// runs the model's own attention shape once at start-up against a plain JavaScript reference and
// prefills in chunks no longer than the largest size that came out right.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { attr, GraphBuilder } from '../../models/onnx/builder.js';
import { DataType } from '../../models/onnx/schema.js';

export interface AttentionShape {
  numHeads: number;
  numKvHeads: number;
  headDim: number;
}

export interface AttentionCheckResult {
  /** Longest number of new tokens per decoder run that matched the reference. */
  maxChunk: number;
  /** Worst |difference| per size tried. */
  tried: Array<{ tokens: number; maxAbsDiff: number }>;
}

/**
 * Sizes tried, longest first; 1 (a decode step) is the floor. 64 stands for "any length": it runs
 * the multi-tile prefill path that fails on lavapipe, and a longer check would cost seconds at
 * start-up on a CPU driver.
 */
const CANDIDATES = [64, 31, 16, 1];
const TOLERANCE = 1e-3;

function values(n: number, seed: number): Float32Array {
  return Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.731 + seed) * 0.5);
}

/** Causal attention over T new tokens after P cached ones, [T, H*hd], in float64. */
export function referenceAttention(shape: AttentionShape, q: Float32Array, k: Float32Array, v: Float32Array, past: number, tokens: number): Float32Array {
  const { numHeads: H, numKvHeads: kvH, headDim: hd } = shape;
  const total = past + tokens;
  const out = new Float32Array(tokens * H * hd);
  const scale = 1 / Math.sqrt(hd);
  const scores = new Float64Array(total);
  for (let t = 0; t < tokens; t++) {
    for (let h = 0; h < H; h++) {
      const kh = Math.floor(h / (H / kvH));
      let max = -Infinity;
      const visible = past + t + 1;
      for (let j = 0; j < visible; j++) {
        let s = 0;
        for (let d = 0; d < hd; d++) s += q[(t * H + h) * hd + d]! * k[(j * kvH + kh) * hd + d]!;
        scores[j] = s * scale;
        max = Math.max(max, scores[j]!);
      }
      let sum = 0;
      for (let j = 0; j < visible; j++) sum += (scores[j] = Math.exp(scores[j]! - max));
      for (let d = 0; d < hd; d++) {
        let acc = 0;
        for (let j = 0; j < visible; j++) acc += scores[j]! * v[(j * kvH + kh) * hd + d]!;
        out[(t * H + h) * hd + d] = acc / sum;
      }
    }
  }
  return out;
}

/** Runs the check with float32 GroupQueryAttention on `createSession`'s provider. */
export async function checkDeviceAttention(
  shape: AttentionShape,
  createSession: (path: string) => Promise<ort.InferenceSession>,
): Promise<AttentionCheckResult> {
  const { numHeads: H, numKvHeads: kvH, headDim: hd } = shape;
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-gqa-check-'));
  const path = join(dir, 'gqa.onnx');
  const g = new GraphBuilder('vistyle_gqa_check');
  const inputs = [
    g.input('query', DataType.FLOAT, [1, 'T', H * hd]),
    g.input('key', DataType.FLOAT, [1, 'T', kvH * hd]),
    g.input('value', DataType.FLOAT, [1, 'T', kvH * hd]),
    g.input('past_key', DataType.FLOAT, [1, kvH, 'C', hd]),
    g.input('past_value', DataType.FLOAT, [1, kvH, 'C', hd]),
    g.input('seqlens_k', DataType.INT32, [1]),
    g.input('total_sequence_length', DataType.INT32, []),
  ];
  const [output] = g.nodeMulti('GroupQueryAttention', inputs, 3, { num_heads: attr.int(H), kv_num_heads: attr.int(kvH), scale: attr.float(1 / Math.sqrt(hd)) }, 'com.microsoft');
  g.output(output!, 'output', DataType.FLOAT, [1, 'T', H * hd]);
  g.save(path);
  let session: ort.InferenceSession | undefined;
  try {
    session = await createSession(path);
    const tried: AttentionCheckResult['tried'] = [];
    for (const tokens of CANDIDATES) {
      // a chunk after a few cached positions, the way a chunked prefill runs
      const past = tokens === 1 ? 8 : 3;
      const total = past + tokens;
      const capacity = total;
      const q = values(tokens * H * hd, 1);
      const kAll = values(total * kvH * hd, 2);
      const vAll = values(total * kvH * hd, 3);
      // the cache in [1,kvH,C,hd] with the past positions filled
      const pastK = new Float32Array(kvH * capacity * hd);
      const pastV = new Float32Array(kvH * capacity * hd);
      for (let j = 0; j < past; j++) for (let h = 0; h < kvH; h++) for (let d = 0; d < hd; d++) {
        pastK[(h * capacity + j) * hd + d] = kAll[(j * kvH + h) * hd + d]!;
        pastV[(h * capacity + j) * hd + d] = vAll[(j * kvH + h) * hd + d]!;
      }
      const out = await session.run({
        query: new ort.Tensor('float32', q, [1, tokens, H * hd]),
        key: new ort.Tensor('float32', kAll.slice(past * kvH * hd), [1, tokens, kvH * hd]),
        value: new ort.Tensor('float32', vAll.slice(past * kvH * hd), [1, tokens, kvH * hd]),
        past_key: new ort.Tensor('float32', pastK, [1, kvH, capacity, hd]),
        past_value: new ort.Tensor('float32', pastV, [1, kvH, capacity, hd]),
        seqlens_k: new ort.Tensor('int32', Int32Array.from([total - 1]), [1]),
        total_sequence_length: new ort.Tensor('int32', Int32Array.from([total]), []),
      });
      const got = out.output!.data as Float32Array;
      const want = referenceAttention(shape, q, kAll, vAll, past, tokens);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      tried.push({ tokens, maxAbsDiff: worst });
      if (worst <= TOLERANCE) return { maxChunk: tokens === CANDIDATES[0] ? Number.MAX_SAFE_INTEGER : tokens, tried };
    }
    return { maxChunk: 0, tried };
  } finally {
    await session?.release();
    rmSync(dir, { recursive: true, force: true });
  }
}
