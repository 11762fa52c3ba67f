// Resampling of 8-bit interleaved images with the semantics of Pillow's `Image.resize` (what the
// Hugging Face image processors call). Pillow resamples in two separable passes — horizontal first,
// into an 8-bit intermediate, then vertical — with antialiasing (the filter's support widens by the
// downscale factor), coefficients normalised in float64 and then quantised to fixed point with 22
// fractional bits, accumulated in integers starting from half a unit, shifted back and clamped.
// Reproducing every one of those steps is what makes the output byte-identical to Pillow's, which the
// reference fixtures were computed with; a resizer that merely "looks the same" (sharp/libvips,
// canvas) differs by a few levels and shifts the model's pixel inputs.

/** Pillow's resampling filter ids, as they appear in `preprocessor_config.json` "resample". */
export const PilResample = {
  NEAREST: 0,
  LANCZOS: 1,
  BILINEAR: 2,
  BICUBIC: 3,
  BOX: 4,
  HAMMING: 5,
} as const;
export type PilResampleId = (typeof PilResample)[keyof typeof PilResample];

interface Filter {
  support: number;
  weight(x: number): number;
}

function sinc(x: number): number {
  if (x === 0) return 1;
  const px = x * Math.PI;
  return Math.sin(px) / px;
}

const FILTERS: Record<Exclude<PilResampleId, 0>, Filter> = {
  [PilResample.BOX]: {
    support: 0.5,
    weight: (x) => (x > -0.5 && x <= 0.5 ? 1 : 0),
  },
  [PilResample.BILINEAR]: {
    support: 1,
    weight: (x) => {
      const ax = Math.abs(x);
      return ax < 1 ? 1 - ax : 0;
    },
  },
  [PilResample.HAMMING]: {
    support: 1,
    weight: (x) => {
      const ax = Math.abs(x);
      if (ax === 0) return 1;
      if (ax >= 1) return 0;
      const px = ax * Math.PI;
      return (Math.sin(px) / px) * (0.54 + 0.46 * Math.cos(px));
    },
  },
  [PilResample.BICUBIC]: {
    // Keys' cubic convolution with a = -0.5 (Pillow's choice; Catmull-Rom).
    support: 2,
    weight: (x) => {
      const a = -0.5;
      const ax = Math.abs(x);
      if (ax < 1) return ((a + 2) * ax - (a + 3)) * ax * ax + 1;
      if (ax < 2) return (((ax - 5) * ax + 8) * ax - 4) * a;
      return 0;
    },
  },
  [PilResample.LANCZOS]: {
    support: 3,
    weight: (x) => (x > -3 && x < 3 ? sinc(x) * sinc(x / 3) : 0),
  },
};

const PRECISION_BITS = 32 - 8 - 2;
const HALF = 1 << (PRECISION_BITS - 1);
const ONE = 1 << PRECISION_BITS;

/** Per-output-pixel source window and fixed-point weights for one axis. */
interface AxisCoefficients {
  /** Taps per output pixel (the stride of `weights`). */
  taps: number;
  /** [first source index, number of source pixels] per output pixel. */
  bounds: Int32Array;
  /** Fixed-point weights, `taps` per output pixel (unused tail entries are 0). */
  weights: Int32Array;
}

function axisCoefficients(inSize: number, outSize: number, filter: Filter): AxisCoefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = filter.support * filterScale;
  const taps = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const weights = new Int32Array(outSize * taps);
  const row = new Float64Array(taps);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates toward zero; Math.trunc keeps that for the negative case.
    let xmin = Math.trunc(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    let total = 0;
    for (let x = 0; x < xmax; x++) {
      const w = filter.weight((x + xmin - center + 0.5) * ss);
      row[x] = w;
      total += w;
    }
    for (let x = 0; x < taps; x++) {
      let w = x < xmax ? row[x]! : 0;
      if (x < xmax && total !== 0) w /= total;
      // Pillow rounds half away from zero when it converts to fixed point.
      weights[xx * taps + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { taps, bounds, weights };
}

function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS; // arithmetic shift: floor, like Pillow's lookup index
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** An 8-bit image, channels interleaved, rows top to bottom. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

function resampleHorizontal(src: RawImage, outWidth: number, rowStart: number, rowCount: number, c: AxisCoefficients): RawImage {
  const { data, width, channels } = src;
  const out = new Uint8Array(outWidth * rowCount * channels);
  const { taps, bounds, weights } = c;
  for (let y = 0; y < rowCount; y++) {
    const inRow = (y + rowStart) * width * channels;
    const outRow = y * outWidth * channels;
    for (let xx = 0; xx < outWidth; xx++) {
      const xmin = bounds[xx * 2]!;
      const count = bounds[xx * 2 + 1]!;
      const k = xx * taps;
      const o = outRow + xx * channels;
      if (channels === 3) {
        // The common case, unrolled over channels: one pass over the taps instead of three.
        let a0 = HALF;
        let a1 = HALF;
        let a2 = HALF;
        let p = inRow + xmin * 3;
        for (let x = 0; x < count; x++, p += 3) {
          const w = weights[k + x]!;
          a0 += data[p]! * w;
          a1 += data[p + 1]! * w;
          a2 += data[p + 2]! * w;
        }
        out[o] = clip8(a0);
        out[o + 1] = clip8(a1);
        out[o + 2] = clip8(a2);
        continue;
      }
      for (let ch = 0; ch < channels; ch++) {
        let acc = HALF;
        let p = inRow + xmin * channels + ch;
        for (let x = 0; x < count; x++, p += channels) acc += data[p]! * weights[k + x]!;
        out[o + ch] = clip8(acc);
      }
    }
  }
  return { data: out, width: outWidth, height: rowCount, channels };
}

function resampleVertical(src: RawImage, outHeight: number, c: AxisCoefficients, boundsShift: number): RawImage {
  const { data, width, channels } = src;
  const rowLength = width * channels;
  const out = new Uint8Array(rowLength * outHeight);
  const { taps, bounds, weights } = c;
  for (let yy = 0; yy < outHeight; yy++) {
    const ymin = bounds[yy * 2]! - boundsShift;
    const count = bounds[yy * 2 + 1]!;
    const k = yy * taps;
    const outRow = yy * rowLength;
    for (let i = 0; i < rowLength; i++) {
      let acc = HALF;
      let p = ymin * rowLength + i;
      for (let y = 0; y < count; y++, p += rowLength) acc += data[p]! * weights[k + y]!;
      out[outRow + i] = clip8(acc);
    }
  }
  return { data: out, width, height: outHeight, channels };
}

// Pillow resizes with NEAREST through an affine transform that samples each output pixel's centre.
function resizeNearest(src: RawImage, outWidth: number, outHeight: number): RawImage {
  const { data, width, height, channels } = src;
  const out = new Uint8Array(outWidth * outHeight * channels);
  const sx = width / outWidth;
  const sy = height / outHeight;
  for (let y = 0; y < outHeight; y++) {
    const iy = Math.min(height - 1, Math.floor((y + 0.5) * sy));
    for (let x = 0; x < outWidth; x++) {
      const ix = Math.min(width - 1, Math.floor((x + 0.5) * sx));
      const s = (iy * width + ix) * channels;
      const d = (y * outWidth + x) * channels;
      for (let ch = 0; ch < channels; ch++) out[d + ch] = data[s + ch]!;
    }
  }
  return { data: out, width: outWidth, height: outHeight, channels };
}

/**
 * Resizes an 8-bit image to `outWidth` x `outHeight` exactly as Pillow's `Image.resize(size, resample)`
 * does (no `box`, no `reducing_gap`). BICUBIC, BILINEAR, LANCZOS, BOX and HAMMING are byte-exact
 * convolutions; NEAREST samples pixel centres.
 */
export function resizePil(src: RawImage, outWidth: number, outHeight: number, resample: PilResampleId = PilResample.BICUBIC): RawImage {
  if (!Number.isInteger(outWidth) || !Number.isInteger(outHeight) || outWidth < 1 || outHeight < 1) {
    throw new RangeError(`resize target must be positive integers, got ${outWidth}x${outHeight}`);
  }
  if (src.data.length !== src.width * src.height * src.channels) {
    throw new RangeError('raw image buffer does not match its width, height and channels');
  }
  if (resample === PilResample.NEAREST) return resizeNearest(src, outWidth, outHeight);
  const filter = FILTERS[resample];
  const needHorizontal = outWidth !== src.width;
  const needVertical = outHeight !== src.height;
  if (!needHorizontal && !needVertical) return { ...src, data: src.data.slice() };

  const vertical = axisCoefficients(src.height, outHeight, filter);
  // Only the source rows the vertical pass reads go through the horizontal pass.
  const firstRow = vertical.bounds[0]!;
  const lastRow = vertical.bounds[outHeight * 2 - 2]! + vertical.bounds[outHeight * 2 - 1]!;

  let current = src;
  let shift = 0;
  if (needHorizontal) {
    const horizontal = axisCoefficients(src.width, outWidth, filter);
    const rowStart = needVertical ? firstRow : 0;
    const rowCount = needVertical ? lastRow - firstRow : src.height;
    current = resampleHorizontal(src, outWidth, rowStart, rowCount, horizontal);
    shift = rowStart;
  }
  if (needVertical) current = resampleVertical(current, outHeight, vertical, shift);
  return current;
}
