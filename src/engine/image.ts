// Image preprocessing for the vision graph: bytes -> float32 pixel values [3,H,W] (NCHW without the
// batch axis), following the checkpoint's preprocessor_config.json the way Hugging Face's image
// processors do: RGB, Pillow resize, rescale, normalise, channels first.
//
//   const cfg = parsePreprocessorConfig(JSON.parse(text));
//   const { pixelValues, width, height } = await preprocessImage(bytes, cfg, limits);
//   // feed as Tensor('float32', pixelValues, [1, 3, height, width])
//
// Resizing is Pillow-exact (see image-resample.ts). For big photos the exact resampler over the full
// image costs ~250 ms per 12 MP, so by default an image more than FAST_PATH_GAP x 2 times the target
// size on an axis is first reduced by sharp, while decoding, to FAST_PATH_GAP x the target on that
// axis (JPEG shrink-on-load + cubic), and then resized exactly. docs/engine-text-image.md gives
// the measured cost and difference; `exactResize: true` turns the fast path off.
import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { VistyleError } from '../errors.js';
import { DEFAULT_IMAGE_LIMITS, decodeImage, readImageHeader, type ImageFormat, type ImageLimits } from './image-decode.js';
import { PilResample, resizePil, type PilResampleId, type RawImage } from './image-resample.js';

export { DEFAULT_IMAGE_LIMITS, readImageHeader, sniffImageFormat, type ImageLimits, type ImageFormat } from './image-decode.js';
export { PilResample, resizePil, type PilResampleId, type RawImage } from './image-resample.js';

/** What preprocessor_config.json asks for, resolved to explicit values. */
export interface PreprocessorConfig {
  doResize: boolean;
  /** Fixed output size, or the shortest edge to scale to (aspect kept; then usually a centre crop). */
  size: { height: number; width: number } | { shortestEdge: number };
  resample: PilResampleId;
  doCenterCrop: boolean;
  cropSize: { height: number; width: number } | null;
  doRescale: boolean;
  rescaleFactor: number;
  doNormalize: boolean;
  imageMean: [number, number, number];
  imageStd: [number, number, number];
}

const triple = z.union([z.number(), z.array(z.number()).length(3)]);
const sizeSchema = z.union([
  z.number().int().positive(),
  z.object({ height: z.number().int().positive(), width: z.number().int().positive() }),
  z.object({ shortest_edge: z.number().int().positive() }),
]);
const rawConfigSchema = z.object({
  do_resize: z.boolean().nullish(),
  size: sizeSchema.nullish(),
  resample: z.number().int().min(0).max(5).nullish(),
  do_center_crop: z.boolean().nullish(),
  crop_size: sizeSchema.nullish(),
  do_rescale: z.boolean().nullish(),
  rescale_factor: z.number().positive().nullish(),
  do_normalize: z.boolean().nullish(),
  image_mean: triple.nullish(),
  image_std: triple.nullish(),
});

function toTriple(value: number | number[]): [number, number, number] {
  return typeof value === 'number' ? [value, value, value] : [value[0]!, value[1]!, value[2]!];
}

/**
 * Validates a parsed preprocessor_config.json. Missing flags take the defaults of
 * SiglipImageProcessor (resize to 224x224 bicubic, rescale 1/255, normalise 0.5/0.5); a bare number
 * `size` means a square. Throws CHECKPOINT_INVALID naming the field.
 */
export function parsePreprocessorConfig(json: unknown, fileName = 'preprocessor_config.json'): PreprocessorConfig {
  const parsed = rawConfigSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join('.') || '(root)';
    throw new VistyleError('CHECKPOINT_INVALID', `${fileName}: field "${field}" is invalid (${issue?.message ?? 'bad value'}).`, {
      details: { file: fileName, field },
    });
  }
  const raw = parsed.data;
  const sizeOf = (s: z.infer<typeof sizeSchema>): PreprocessorConfig['size'] =>
    typeof s === 'number' ? { height: s, width: s } : 'shortest_edge' in s ? { shortestEdge: s.shortest_edge } : { height: s.height, width: s.width };
  const size = raw.size == null ? { height: 224, width: 224 } : sizeOf(raw.size);
  const crop = raw.crop_size == null ? null : sizeOf(raw.crop_size);
  if (crop && 'shortestEdge' in crop) {
    throw new VistyleError('CHECKPOINT_INVALID', `${fileName}: field "crop_size" must give height and width.`, {
      details: { file: fileName, field: 'crop_size' },
    });
  }
  const doCenterCrop = raw.do_center_crop ?? false;
  if (doCenterCrop && !crop) {
    throw new VistyleError('CHECKPOINT_INVALID', `${fileName}: field "crop_size" is missing but do_center_crop is true.`, {
      details: { file: fileName, field: 'crop_size' },
    });
  }
  return {
    doResize: raw.do_resize ?? true,
    size,
    resample: (raw.resample ?? PilResample.BICUBIC) as PilResampleId,
    doCenterCrop,
    cropSize: crop as { height: number; width: number } | null,
    doRescale: raw.do_rescale ?? true,
    rescaleFactor: raw.rescale_factor ?? 1 / 255,
    doNormalize: raw.do_normalize ?? true,
    imageMean: toTriple(raw.image_mean ?? 0.5),
    imageStd: toTriple(raw.image_std ?? 0.5),
  };
}

/** Reads and validates a preprocessor_config.json file. */
export async function loadPreprocessorConfig(path: string): Promise<PreprocessorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (cause) {
    throw new VistyleError('CHECKPOINT_INVALID', `Cannot read ${path}.`, { cause, details: { file: path } });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new VistyleError('CHECKPOINT_INVALID', `${path} is not valid JSON.`, { cause, details: { file: path } });
  }
  return parsePreprocessorConfig(json, path);
}

/** The size the resize step produces for an image of this size (HF semantics). */
export function resizeTarget(cfg: PreprocessorConfig, width: number, height: number): { width: number; height: number } {
  if (!cfg.doResize) return { width, height };
  if ('shortestEdge' in cfg.size) {
    // transformers' get_resize_output_image_size(default_to_square=False): the short side becomes
    // the requested size, the long side int(size * long / short).
    const edge = cfg.size.shortestEdge;
    if (width <= height) return { width: edge, height: Math.trunc((edge * height) / width) };
    return { width: Math.trunc((edge * width) / height), height: edge };
  }
  return { width: cfg.size.width, height: cfg.size.height };
}

/** The size of the pixel values preprocessImage returns for an image of this size. */
export function outputSize(cfg: PreprocessorConfig, width: number, height: number): { width: number; height: number } {
  const resized = resizeTarget(cfg, width, height);
  return cfg.doCenterCrop && cfg.cropSize ? { ...cfg.cropSize } : resized;
}

// transformers' center_crop: top-left at ((H - h) // 2, (W - w) // 2); a crop larger than the image
// pads it with zeros around the centre.
function centerCrop(src: RawImage, width: number, height: number): RawImage {
  if (width === src.width && height === src.height) return src;
  const out = new Uint8Array(width * height * 3);
  const top = Math.floor((src.height - height) / 2);
  const left = Math.floor((src.width - width) / 2);
  for (let y = 0; y < height; y++) {
    const sy = y + top;
    if (sy < 0 || sy >= src.height) continue;
    for (let x = 0; x < width; x++) {
      const sx = x + left;
      if (sx < 0 || sx >= src.width) continue;
      const s = (sy * src.width + sx) * 3;
      const d = (y * width + x) * 3;
      out[d] = src.data[s]!;
      out[d + 1] = src.data[s + 1]!;
      out[d + 2] = src.data[s + 2]!;
    }
  }
  return { data: out, width, height, channels: 3 };
}

/**
 * uint8 HWC RGB -> float32 CHW, rescaled and normalised in float32 the way the HF processor does:
 * `f32(x * rescale_factor)` (the product rounded once from float64), then `f32(f32(v - mean) / std)`.
 */
export function normalizeToChw(image: RawImage, cfg: Pick<PreprocessorConfig, 'doRescale' | 'rescaleFactor' | 'doNormalize' | 'imageMean' | 'imageStd'>): Float32Array {
  if (image.channels !== 3) throw new RangeError('normalizeToChw expects RGB pixels');
  const plane = image.width * image.height;
  const out = new Float32Array(plane * 3);
  const f = Math.fround;
  for (let c = 0; c < 3; c++) {
    // Per-channel lookup table: every uint8 value maps to one float32.
    const lut = new Float32Array(256);
    const mean = f(cfg.imageMean[c]!);
    const std = f(cfg.imageStd[c]!);
    for (let v = 0; v < 256; v++) {
      let x = cfg.doRescale ? f(v * cfg.rescaleFactor) : v;
      if (cfg.doNormalize) x = f(f(x - mean) / std);
      lut[v] = x;
    }
    const base = c * plane;
    for (let i = 0; i < plane; i++) out[base + i] = lut[image.data[i * 3 + c]!]!;
  }
  return out;
}

export interface PreprocessOptions {
  /** Always resample the full-resolution image exactly (no shrink-on-load fast path). */
  exactResize?: boolean;
}

export interface PreprocessedImage {
  /** [3, height, width] float32, channels first: feed as [1, 3, height, width]. */
  pixelValues: Float32Array;
  width: number;
  height: number;
  /** The picture as received: format, oriented size, frame count. */
  source: { format: ImageFormat; width: number; height: number; frames: number };
  /** True when the large-image fast path reduced the image while decoding. */
  shrunkOnLoad: boolean;
}

/**
 * An image more than 2 x FAST_PATH_GAP times the resize target on an axis is reduced by sharp to
 * FAST_PATH_GAP x the target on that axis before the exact resize.
 */
export const FAST_PATH_GAP = 3;

/**
 * Bytes (JPEG, PNG, WebP or GIF; first frame) -> pixel values. Refuses before decoding what is
 * over `limits` (IMAGE_TOO_LARGE) or is not one of those formats (IMAGE_UNSUPPORTED); damaged or
 * truncated data gives IMAGE_CORRUPT.
 */
export async function preprocessImage(
  bytes: Uint8Array,
  cfg: PreprocessorConfig,
  limits: ImageLimits = DEFAULT_IMAGE_LIMITS,
  options: PreprocessOptions = {},
): Promise<PreprocessedImage> {
  const header = await readImageHeader(bytes, limits);
  const target = resizeTarget(cfg, header.width, header.height);
  let shrinkTo: { width: number; height: number } | undefined;
  if (cfg.doResize && !options.exactResize) {
    const shrinkAxis = (src: number, out: number): number => (src > 2 * FAST_PATH_GAP * out ? FAST_PATH_GAP * out : src);
    const w = shrinkAxis(header.width, target.width);
    const h = shrinkAxis(header.height, target.height);
    if (w !== header.width || h !== header.height) shrinkTo = { width: w, height: h };
  }
  const { image: decoded } = await decodeImage(bytes, limits, shrinkTo ? { shrinkTo, header } : { header });
  let image = decoded;
  if (cfg.doResize && (image.width !== target.width || image.height !== target.height)) {
    image = resizePil(image, target.width, target.height, cfg.resample);
  }
  if (cfg.doCenterCrop && cfg.cropSize) image = centerCrop(image, cfg.cropSize.width, cfg.cropSize.height);
  return {
    pixelValues: normalizeToChw(image, cfg),
    width: image.width,
    height: image.height,
    source: { format: header.format, width: header.width, height: header.height, frames: header.frames },
    shrunkOnLoad: shrinkTo !== undefined,
  };
}
