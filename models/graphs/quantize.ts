// Weight-only block quantization for onnxruntime's com.microsoft MatMulNBits.
//
// A checkpoint linear weight W is [N = out, K = in], row-major: exactly MatMulNBits' orientation
// (each output row is quantized along K), so no transpose is needed. Per row, K is cut into
// ceil(K / blockSize) blocks; each block gets one scale and the default zero point 2^(bits-1)
// (symmetric: no zero_points input). Dequantized: w = (code - 2^(bits-1)) * scale.
//
// Symmetric range: the block's value of largest magnitude, m, maps to the most negative code
// (scale = m / -2^(bits-1)), so all 2^bits codes are usable; a value of the opposite sign and the
// same magnitude rounds to +2^(bits-1), one past the top, and is clamped to 2^(bits-1) - 1.
// The scale is rounded to its stored type (float32 or float16) BEFORE the codes are chosen, so
// the codes are the best ones for the scale onnxruntime will actually use.
//
// Packing (MatMulNBits input B, uint8 [N, kBlocks, blockSize * bits / 8]): codes in K order,
// low bits first — for 4 bits, element 2j in the low nibble of byte j and 2j+1 in the high
// nibble; for 8 bits one code per byte. Padding past K in the last block holds the zero point
// (it dequantizes to 0).
import { floatToHalfBits, halfBitsToFloat } from '../checkpoint/dtype.js';

export type QuantBits = 4 | 8;
export type ScaleType = 'float32' | 'float16';

export interface QuantSpec {
  bits: QuantBits;
  /** Weights per block along K: a power of two, at least 16. */
  blockSize: number;
  /** MatMulNBits accuracy_level: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 (A quantized per block). */
  accuracyLevel: number;
}

/** Quantization codes (one byte each, unpacked, padded to whole blocks) and the stored scales. */
export interface QuantizedWeight {
  rows: number;
  cols: number;
  bits: QuantBits;
  blockSize: number;
  blocksPerRow: number;
  /** [rows, blocksPerRow * blockSize], values 0 .. 2^bits - 1. */
  codes: Uint8Array;
  /** [rows, blocksPerRow], the scales' values exactly as stored (float16 scales already rounded). */
  scales: Float32Array;
  scaleType: ScaleType;
}

export function isValidBlockSize(blockSize: number): boolean {
  return Number.isInteger(blockSize) && blockSize >= 16 && (blockSize & (blockSize - 1)) === 0;
}

export function zeroPoint(bits: QuantBits): number {
  return 1 << (bits - 1);
}

const f32 = new Float32Array(1);
function storedScale(value: number, type: ScaleType): number {
  if (type === 'float16') return halfBitsToFloat(floatToHalfBits(value));
  f32[0] = value;
  return f32[0]!;
}

/** Quantizes a row-major [rows, cols] weight block-wise along cols. */
export function quantizeWeight(w: Float32Array, rows: number, cols: number, bits: QuantBits, blockSize: number, scaleType: ScaleType): QuantizedWeight {
  if (w.length !== rows * cols) throw new Error(`quantizeWeight: ${w.length} values for [${rows}, ${cols}]`);
  if (!isValidBlockSize(blockSize)) throw new Error(`block size ${blockSize} is not a power of two >= 16`);
  const blocksPerRow = Math.ceil(cols / blockSize);
  const padded = blocksPerRow * blockSize;
  const zp = zeroPoint(bits);
  const maxCode = (1 << bits) - 1;
  const codes = new Uint8Array(rows * padded).fill(zp);
  const scales = new Float32Array(rows * blocksPerRow);
  for (let r = 0; r < rows; r++) {
    const rowIn = r * cols;
    const rowOut = r * padded;
    for (let b = 0; b < blocksPerRow; b++) {
      const start = b * blockSize;
      const end = Math.min(cols, start + blockSize);
      let m = 0;
      for (let k = start; k < end; k++) {
        const v = w[rowIn + k]!;
        if (Math.abs(v) > Math.abs(m)) m = v;
      }
      let scale = storedScale(m / -zp, scaleType);
      // a float16 scale can underflow to 0 (or the block is all zeros): every code is the zero point
      if (scale === 0 || !Number.isFinite(scale)) scale = 0;
      scales[r * blocksPerRow + b] = scale;
      if (scale === 0) continue;
      const inv = 1 / scale;
      for (let k = start; k < end; k++) {
        const q = Math.round(w[rowIn + k]! * inv) + zp;
        codes[rowOut + k] = q < 0 ? 0 : q > maxCode ? maxCode : q;
      }
    }
  }
  return { rows, cols, bits, blockSize, blocksPerRow, codes, scales, scaleType };
}

/** The weight onnxruntime computes with: (code - zero point) * scale, as row-major [rows, cols] float32. */
export function dequantizeWeight(q: QuantizedWeight): Float32Array {
  const out = new Float32Array(q.rows * q.cols);
  const zp = zeroPoint(q.bits);
  const padded = q.blocksPerRow * q.blockSize;
  for (let r = 0; r < q.rows; r++) {
    for (let k = 0; k < q.cols; k++) {
      const scale = q.scales[r * q.blocksPerRow + Math.floor(k / q.blockSize)]!;
      out[r * q.cols + k] = (q.codes[r * padded + k]! - zp) * scale;
    }
  }
  return out;
}

/** MatMulNBits input B: uint8 [rows, blocksPerRow, blockSize * bits / 8], low bits first along K. */
export function packCodes(q: QuantizedWeight): Uint8Array {
  if (q.bits === 8) return q.codes;
  const packed = new Uint8Array(q.codes.length / 2);
  for (let i = 0; i < packed.length; i++) packed[i] = q.codes[2 * i]! | (q.codes[2 * i + 1]! << 4);
  return packed;
}

/** The scales as MatMulNBits input `scales` data ([rows, blocksPerRow], float32 or float16 bits). */
export function scaleData(q: QuantizedWeight): Float32Array | Uint16Array {
  if (q.scaleType === 'float32') return q.scales;
  const bits = new Uint16Array(q.scales.length);
  for (let i = 0; i < bits.length; i++) bits[i] = floatToHalfBits(q.scales[i]!);
  return bits;
}

/** Bytes of one quantized [rows, cols] weight in the graph (codes + scales). */
export function quantizedBytes(rows: number, cols: number, bits: QuantBits, blockSize: number, scaleType: ScaleType): number {
  const blocks = Math.ceil(cols / blockSize);
  return rows * blocks * ((blockSize * bits) / 8 + (scaleType === 'float16' ? 2 : 4));
}
