// A plain float64 forward pass of LLaVA (SigLIP + projector + Qwen2), written with straightforward
// loops and independent of the ONNX graph code, so that graphs built from generated checkpoints
// can be checked against it. It is itself checked against the transformers reference numbers of
// tests/fixtures/tiny-a (tests/models/reference-forward.test.ts). Slow; for tiny models only.
import { openCheckpoint, type Checkpoint } from '../../models/checkpoint/reader.js';
import type { Activation, LlavaConfig } from '../../models/checkpoint/config.js';

export function erf(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3) {
    // Maclaurin series
    let sum = 0;
    let term = ax; // x^(2n+1) / n!
    for (let n = 0; n < 80; n++) {
      const add = term / (2 * n + 1);
      sum += n % 2 === 0 ? add : -add;
      term *= (ax * ax) / (n + 1);
      if (Math.abs(add) < 1e-17) break;
    }
    return Math.sign(x) * (2 / Math.sqrt(Math.PI)) * sum;
  }
  // erfc continued fraction, evaluated backwards
  let f = 0;
  for (let k = 60; k >= 1; k--) f = (k / 2) / (ax + f);
  const erfc = Math.exp(-ax * ax) / Math.sqrt(Math.PI) / (ax + f);
  return Math.sign(x) * (1 - erfc);
}

export function activate(act: Activation, x: number): number {
  switch (act) {
    case 'silu':
      return x / (1 + Math.exp(-x));
    case 'gelu_erf':
      return 0.5 * x * (1 + erf(x / Math.SQRT2));
    case 'gelu_tanh':
      return 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x * x * x)));
    case 'quick_gelu':
      return x / (1 + Math.exp(-1.702 * x));
    case 'relu':
      return Math.max(0, x);
  }
}

/** y[t, o] = b[o] + sum_i x[t, i] * W[o, i]  (W is [out, in] as in PyTorch). */
function linear(x: Float64Array, rows: number, W: Float64Array, inF: number, outF: number, b?: Float64Array): Float64Array {
  const y = new Float64Array(rows * outF);
  for (let t = 0; t < rows; t++) {
    for (let o = 0; o < outF; o++) {
      let s = b ? b[o]! : 0;
      const wo = o * inF;
      const xt = t * inF;
      for (let i = 0; i < inF; i++) s += x[xt + i]! * W[wo + i]!;
      y[t * outF + o] = s;
    }
  }
  return y;
}

function layerNorm(x: Float64Array, rows: number, dim: number, w: Float64Array, b: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let t = 0; t < rows; t++) {
    let mean = 0;
    for (let i = 0; i < dim; i++) mean += x[t * dim + i]!;
    mean /= dim;
    let v = 0;
    for (let i = 0; i < dim; i++) v += (x[t * dim + i]! - mean) ** 2;
    v /= dim;
    const inv = 1 / Math.sqrt(v + eps);
    for (let i = 0; i < dim; i++) y[t * dim + i] = (x[t * dim + i]! - mean) * inv * w[i]! + b[i]!;
  }
  return y;
}

function rmsNorm(x: Float64Array, rows: number, dim: number, w: Float64Array, eps: number): Float64Array {
  const y = new Float64Array(rows * dim);
  for (let t = 0; t < rows; t++) {
    let ms = 0;
    for (let i = 0; i < dim; i++) ms += x[t * dim + i]! ** 2;
    const inv = 1 / Math.sqrt(ms / dim + eps);
    for (let i = 0; i < dim; i++) y[t * dim + i] = x[t * dim + i]! * inv * w[i]!;
  }
  return y;
}

export interface LoraDelta {
  /** [r, in] */
  A: Float64Array;
  /** [out, r], the scale already folded in */
  B: Float64Array;
  r: number;
}

export interface VisionResult {
  /** hidden_states[0..k] for the layers computed, each [P, Dv]. */
  hiddenStates: Float64Array[];
  /** [N, D] */
  imageFeatures: Float64Array;
}

export interface DecoderResult {
  /** [T, V] */
  logits: Float64Array;
  /** per layer: keys after RoPE [kvH, T, hd] and values [kvH, T, hd] */
  keys: Float64Array[];
  values: Float64Array[];
  /** [n+1] hidden states as in transformers (the last one after the final norm), each [T, D]. */
  hiddenStates: Float64Array[];
}

export class ReferenceModel {
  readonly config: LlavaConfig;
  private readonly checkpoint: Checkpoint;
  private readonly cache = new Map<string, Float64Array>();
  /** LoRA deltas by canonical module name (e.g. language_model.layers.0.self_attn.q_proj). */
  lora = new Map<string, LoraDelta>();

  constructor(checkpointDir: string) {
    this.checkpoint = openCheckpoint(checkpointDir);
    this.config = this.checkpoint.config;
  }

  close(): void {
    this.checkpoint.close();
  }

  w(name: string): Float64Array {
    let t = this.cache.get(name);
    if (!t) {
      t = Float64Array.from(this.checkpoint.tensors.read(name));
      this.cache.set(name, t);
    }
    return t;
  }

  private proj(module: string, x: Float64Array, rows: number, inF: number, outF: number, bias: boolean): Float64Array {
    const y = linear(x, rows, this.w(`${module}.weight`), inF, outF, bias ? this.w(`${module}.bias`) : undefined);
    const delta = this.lora.get(module);
    if (delta && delta.r > 0) {
      const xa = linear(x, rows, delta.A, inF, delta.r);
      const d = linear(xa, rows, delta.B, delta.r, outF);
      for (let i = 0; i < y.length; i++) y[i]! += d[i]!;
    }
    return y;
  }

  /** pixels: [3, S, S] float values (already normalised). */
  vision(pixels: Float64Array | Float32Array): VisionResult {
    const v = this.config.vision;
    const S = v.imageSize;
    const p = v.patchSize;
    const g = v.gridSize;
    const P = g * g;
    const Dv = v.hiddenSize;
    const C = v.numChannels;
    const W = this.w('vision_tower.embeddings.patch_embedding.weight');
    const b = this.w('vision_tower.embeddings.patch_embedding.bias');
    const pos = this.w('vision_tower.embeddings.position_embedding.weight');
    let x: Float64Array = new Float64Array(P * Dv);
    for (let gy = 0; gy < g; gy++) {
      for (let gx = 0; gx < g; gx++) {
        const patch = gy * g + gx;
        for (let c = 0; c < Dv; c++) {
          let s = b[c]!;
          for (let ch = 0; ch < C; ch++) {
            for (let ky = 0; ky < p; ky++) {
              for (let kx = 0; kx < p; kx++) {
                s += W[((c * C + ch) * p + ky) * p + kx]! * pixels[(ch * S + gy * p + ky) * S + gx * p + kx]!;
              }
            }
          }
          x[patch * Dv + c] = s + pos[patch * Dv + c]!;
        }
      }
    }
    const hiddenStates: Float64Array[] = [x];
    const H = v.numHeads;
    const hd = v.headDim;
    for (let l = 0; l < this.config.featureLayerIndex; l++) {
      const pre = `vision_tower.encoder.layers.${l}.`;
      const h = layerNorm(x, P, Dv, this.w(`${pre}layer_norm1.weight`), this.w(`${pre}layer_norm1.bias`), v.layerNormEps);
      const q = this.proj(`${pre}self_attn.q_proj`, h, P, Dv, Dv, true);
      const k = this.proj(`${pre}self_attn.k_proj`, h, P, Dv, Dv, true);
      const val = this.proj(`${pre}self_attn.v_proj`, h, P, Dv, Dv, true);
      const att = new Float64Array(P * Dv);
      const scale = 1 / Math.sqrt(hd);
      const scores = new Float64Array(P);
      for (let head = 0; head < H; head++) {
        for (let i = 0; i < P; i++) {
          let max = -Infinity;
          for (let j = 0; j < P; j++) {
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i * Dv + head * hd + d]! * k[j * Dv + head * hd + d]!;
            scores[j] = s * scale;
            max = Math.max(max, scores[j]!);
          }
          let sum = 0;
          for (let j = 0; j < P; j++) sum += scores[j] = Math.exp(scores[j]! - max);
          for (let d = 0; d < hd; d++) {
            let s = 0;
            for (let j = 0; j < P; j++) s += scores[j]! * val[j * Dv + head * hd + d]!;
            att[i * Dv + head * hd + d] = s / sum;
          }
        }
      }
      const o = this.proj(`${pre}self_attn.out_proj`, att, P, Dv, Dv, true);
      const x1 = new Float64Array(P * Dv);
      for (let i = 0; i < x1.length; i++) x1[i] = x[i]! + o[i]!;
      const h2 = layerNorm(x1, P, Dv, this.w(`${pre}layer_norm2.weight`), this.w(`${pre}layer_norm2.bias`), v.layerNormEps);
      const f1 = linear(h2, P, this.w(`${pre}mlp.fc1.weight`), Dv, v.intermediateSize, this.w(`${pre}mlp.fc1.bias`));
      for (let i = 0; i < f1.length; i++) f1[i] = activate(v.hiddenAct, f1[i]!);
      const f2 = linear(f1, P, this.w(`${pre}mlp.fc2.weight`), v.intermediateSize, Dv, this.w(`${pre}mlp.fc2.bias`));
      x = new Float64Array(P * Dv);
      for (let i = 0; i < x.length; i++) x[i] = x1[i]! + f2[i]!;
      hiddenStates.push(x);
    }
    let selected = hiddenStates[this.config.featureLayerIndex]!;
    let rows = P;
    if (this.config.selectStrategy === 'default') {
      selected = selected.slice(Dv);
      rows = P - 1;
    }
    const D = this.config.text.hiddenSize;
    const bias = this.config.projectorBias;
    const p1 = linear(selected, rows, this.w('multi_modal_projector.linear_1.weight'), Dv, D,
      bias ? this.w('multi_modal_projector.linear_1.bias') : undefined);
    for (let i = 0; i < p1.length; i++) p1[i] = activate(this.config.projectorAct, p1[i]!);
    const imageFeatures = linear(p1, rows, this.w('multi_modal_projector.linear_2.weight'), D, D,
      bias ? this.w('multi_modal_projector.linear_2.bias') : undefined);
    return { hiddenStates, imageFeatures };
  }

  /** embed_tokens rows for ids: [T, D]. */
  embed(ids: number[]): Float64Array {
    const D = this.config.text.hiddenSize;
    const E = this.w('language_model.embed_tokens.weight');
    const out = new Float64Array(ids.length * D);
    ids.forEach((id, t) => out.set(E.subarray(id * D, (id + 1) * D), t * D));
    return out;
  }

  /**
   * Full (uncached) decoder pass over one sequence. mask[j] = 0 marks padding; key j is visible from
   * query i iff j <= i and mask[j] == 1.
   */
  decoder(embeds: Float64Array, positions: number[], mask?: number[]): DecoderResult {
    const t = this.config.text;
    const T = positions.length;
    const D = t.hiddenSize;
    const H = t.numHeads;
    const kvH = t.numKvHeads;
    const hd = t.headDim;
    const group = H / kvH;
    const m = mask ?? positions.map(() => 1);
    const invFreq = Array.from({ length: hd / 2 }, (_, i) => 1 / t.ropeTheta ** ((2 * i) / hd));
    const rope = (vec: Float64Array, base: number, pos: number): void => {
      const half = hd / 2;
      for (let i = 0; i < half; i++) {
        const a = pos * invFreq[i]!;
        const c = Math.cos(a);
        const s = Math.sin(a);
        const x1 = vec[base + i]!;
        const x2 = vec[base + i + half]!;
        vec[base + i] = x1 * c - x2 * s;
        vec[base + i + half] = x2 * c + x1 * s;
      }
    };
    let x: Float64Array = Float64Array.from(embeds);
    const hiddenStates: Float64Array[] = [x];
    const keys: Float64Array[] = [];
    const values: Float64Array[] = [];
    for (let l = 0; l < t.numLayers; l++) {
      const pre = `language_model.layers.${l}.`;
      const h = rmsNorm(x, T, D, this.w(`${pre}input_layernorm.weight`), t.rmsNormEps);
      const q = this.proj(`${pre}self_attn.q_proj`, h, T, D, H * hd, true);
      const k = this.proj(`${pre}self_attn.k_proj`, h, T, D, kvH * hd, true);
      const v = this.proj(`${pre}self_attn.v_proj`, h, T, D, kvH * hd, true);
      for (let i = 0; i < T; i++) {
        for (let head = 0; head < H; head++) rope(q, i * H * hd + head * hd, positions[i]!);
        for (let head = 0; head < kvH; head++) rope(k, i * kvH * hd + head * hd, positions[i]!);
      }
      const K = new Float64Array(kvH * T * hd);
      const Vv = new Float64Array(kvH * T * hd);
      for (let i = 0; i < T; i++) {
        for (let head = 0; head < kvH; head++) {
          for (let d = 0; d < hd; d++) {
            K[(head * T + i) * hd + d] = k[i * kvH * hd + head * hd + d]!;
            Vv[(head * T + i) * hd + d] = v[i * kvH * hd + head * hd + d]!;
          }
        }
      }
      keys.push(K);
      values.push(Vv);
      const att = new Float64Array(T * H * hd);
      const scores = new Float64Array(T);
      for (let head = 0; head < H; head++) {
        const kvHead = Math.floor(head / group);
        for (let i = 0; i < T; i++) {
          let max = -Infinity;
          let any = false;
          for (let j = 0; j < T; j++) {
            if (j > i || m[j] === 0) {
              scores[j] = -Infinity;
              continue;
            }
            let s = 0;
            for (let d = 0; d < hd; d++) s += q[i * H * hd + head * hd + d]! * K[(kvHead * T + j) * hd + d]!;
            scores[j] = s / Math.sqrt(hd);
            max = Math.max(max, scores[j]!);
            any = true;
          }
          if (!any) continue; // a padding query with nothing visible: its output is never used
          let sum = 0;
          for (let j = 0; j < T; j++) sum += scores[j] = scores[j] === -Infinity ? 0 : Math.exp(scores[j]! - max);
          for (let d = 0; d < hd; d++) {
            let s = 0;
            for (let j = 0; j <= i; j++) s += scores[j]! * Vv[(kvHead * T + j) * hd + d]!;
            att[i * H * hd + head * hd + d] = s / sum;
          }
        }
      }
      const o = this.proj(`${pre}self_attn.o_proj`, att, T, H * hd, D, false);
      const x1 = new Float64Array(T * D);
      for (let i = 0; i < x1.length; i++) x1[i] = x[i]! + o[i]!;
      const h2 = rmsNorm(x1, T, D, this.w(`${pre}post_attention_layernorm.weight`), t.rmsNormEps);
      const gate = linear(h2, T, this.w(`${pre}mlp.gate_proj.weight`), D, t.intermediateSize);
      const up = linear(h2, T, this.w(`${pre}mlp.up_proj.weight`), D, t.intermediateSize);
      for (let i = 0; i < gate.length; i++) gate[i] = activate(t.hiddenAct, gate[i]!) * up[i]!;
      const down = linear(gate, T, this.w(`${pre}mlp.down_proj.weight`), t.intermediateSize, D);
      x = new Float64Array(T * D);
      for (let i = 0; i < x.length; i++) x[i] = x1[i]! + down[i]!;
      if (l < t.numLayers - 1) hiddenStates.push(x);
    }
    const final = rmsNorm(x, T, D, this.w('language_model.norm.weight'), t.rmsNormEps);
    hiddenStates.push(final);
    const lmHead = this.checkpoint.tiedEmbeddings ? this.w('language_model.embed_tokens.weight') : this.w('lm_head.weight');
    const logits = linear(final, T, lmHead, D, t.vocabSize);
    return { logits, keys, values, hiddenStates };
  }

  /** inputs_embeds for a prompt: token rows, with image-token rows replaced by image features. */
  mergeEmbeds(ids: number[], imageFeatures: Float64Array): Float64Array {
    const D = this.config.text.hiddenSize;
    const out = this.embed(ids);
    let row = 0;
    ids.forEach((id, t) => {
      if (id === this.config.imageTokenId) {
        out.set(imageFeatures.subarray(row * D, (row + 1) * D), t * D);
        row++;
      }
    });
    return out;
  }
}
