import { readFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';
import * as zlib from 'node:zlib';
import { join } from 'node:path';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { isVistyleError, type ErrorCode } from '../../src/errors.js';
import {
  FAST_PATH_GAP,
  normalizeToChw,
  outputSize,
  parsePreprocessorConfig,
  PilResample,
  preprocessImage,
  readImageHeader,
  resizePil,
  sniffImageFormat,
  type RawImage,
} from '../../src/engine/image.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures');
const TINY = join(FIXTURES, 'tiny-a');
const REF = join(TINY, 'reference');

const bytes = (path: string): Uint8Array => new Uint8Array(readFileSync(path));
const floats = (path: string): Float32Array => {
  const b = readFileSync(path);
  return new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
};
const tinyConfig = parsePreprocessorConfig(JSON.parse(readFileSync(join(TINY, 'preprocessor_config.json'), 'utf8')));

const IMAGES = [
  { png: 'test_image_64x48.png', raw: 'test_image_64x48.rgb.u8.bin', w: 64, h: 48, ref: 'image1' },
  { png: 'test_image2_40x56.png', raw: 'test_image2_40x56.rgb.u8.bin', w: 40, h: 56, ref: 'image2' },
] as const;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

async function expectError(promise: Promise<unknown>, code: ErrorCode, message: RegExp): Promise<void> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(isVistyleError(error, code), `expected VistyleError ${code}, got ${String(error)}`).toBe(true);
  expect((error as Error).message).toMatch(message);
}

async function solidRgb(width: number, height: number, rgb: [number, number, number]): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } } })
    .png()
    .toBuffer();
}

describe('Pillow-exact resize', () => {
  for (const img of IMAGES) {
    it(`reproduces the reference bicubic resize of ${img.png} byte for byte`, () => {
      const src: RawImage = { data: bytes(join(FIXTURES, 'images', img.raw)), width: img.w, height: img.h, channels: 3 };
      const out = resizePil(src, 56, 56, PilResample.BICUBIC);
      const expected = bytes(join(REF, `${img.ref}_resized_rgb.u8.bin`));
      expect(out.width).toBe(56);
      expect(out.height).toBe(56);
      expect(Buffer.from(out.data).equals(Buffer.from(expected))).toBe(true);
    });
  }

  it("differs from sharp's own cubic resize (why the resampler is ours)", async () => {
    const img = IMAGES[0];
    const expected = bytes(join(REF, `${img.ref}_resized_rgb.u8.bin`));
    const viaSharp = await sharp(readFileSync(join(FIXTURES, 'images', img.png)))
      .resize(56, 56, { fit: 'fill', kernel: 'cubic' })
      .raw()
      .toBuffer();
    const gap = maxAbsDiff(new Uint8Array(viaSharp), expected);
    // Measured with sharp 0.35: max 168 levels, mean 11 on this noise image (docs/engine-text-image.md).
    expect(gap).toBeGreaterThan(50);
  });

  it('keeps a constant image constant and returns the requested size for every filter', () => {
    const src: RawImage = { data: new Uint8Array(30 * 20 * 3).fill(77), width: 30, height: 20, channels: 3 };
    for (const filter of Object.values(PilResample)) {
      for (const [w, h] of [
        [7, 11],
        [61, 5],
        [30, 40],
      ] as const) {
        const out = resizePil(src, w, h, filter);
        expect([out.width, out.height]).toEqual([w, h]);
        expect(out.data.every((v) => v === 77)).toBe(true);
      }
    }
  });
});

describe('rescale and normalise', () => {
  for (const img of IMAGES) {
    it(`gives ${img.ref}_pixel_values bit-exactly from ${img.ref}_resized_rgb`, () => {
      const resized: RawImage = { data: bytes(join(REF, `${img.ref}_resized_rgb.u8.bin`)), width: 56, height: 56, channels: 3 };
      const out = normalizeToChw(resized, tinyConfig);
      const expected = floats(join(REF, `${img.ref}_pixel_values.f32.bin`));
      expect(out.length).toBe(3 * 56 * 56);
      expect(Buffer.from(out.buffer).equals(Buffer.from(expected.buffer))).toBe(true);
    });
  }
});

describe('preprocessImage end to end', () => {
  for (const img of IMAGES) {
    it(`turns ${img.png} into the reference pixel values exactly`, async () => {
      const out = await preprocessImage(bytes(join(FIXTURES, 'images', img.png)), tinyConfig);
      expect([out.width, out.height]).toEqual([56, 56]);
      expect(out.source).toEqual({ format: 'png', width: img.w, height: img.h, frames: 1 });
      const expected = floats(join(REF, `${img.ref}_pixel_values.f32.bin`));
      expect(maxAbsDiff(out.pixelValues, expected)).toBe(0);
    });
  }

  it('passes an image already at the target size through unchanged (tiny-a/image1_56x56.png)', async () => {
    const out = await preprocessImage(bytes(join(TINY, 'image1_56x56.png')), tinyConfig);
    expect(maxAbsDiff(out.pixelValues, floats(join(REF, 'image1_pixel_values.f32.bin')))).toBe(0);
  });

  it('reads JPEG and WebP too', async () => {
    const raw = bytes(join(FIXTURES, 'images', 'test_image_64x48.rgb.u8.bin'));
    const expected = floats(join(REF, 'image1_pixel_values.f32.bin'));
    const source = sharp(raw, { raw: { width: 64, height: 48, channels: 3 } });
    const webp = await source.clone().webp({ lossless: true }).toBuffer();
    const fromWebp = await preprocessImage(webp, tinyConfig);
    expect(fromWebp.source.format).toBe('webp');
    expect(maxAbsDiff(fromWebp.pixelValues, expected)).toBe(0);
    // JPEG is lossy: close on average (one level is 2/255 after normalisation), not equal
    const jpeg = await source.clone().jpeg({ quality: 100, chromaSubsampling: '4:4:4' }).toBuffer();
    const fromJpeg = await preprocessImage(jpeg, tinyConfig);
    expect(fromJpeg.source.format).toBe('jpeg');
    let sum = 0;
    for (let i = 0; i < expected.length; i++) sum += Math.abs(fromJpeg.pixelValues[i]! - expected[i]!);
    expect(sum / expected.length).toBeLessThan(0.02);
  });

  for (const scale of [1, 20]) {
    it(`applies EXIF orientation before resizing${scale > 1 ? ' (big image, fast path)' : ''}`, async () => {
      // 40s wide x 20s high: left half red, right half blue. Orientation 6 = rotate 90° clockwise
      // when shown, so the upright picture is 20s wide x 40s high with red on top.
      const w = 40 * scale;
      const h = 20 * scale;
      const raw = new Uint8Array(w * h * 3);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) raw.set(x < w / 2 ? [255, 0, 0] : [0, 0, 255], (y * w + x) * 3);
      }
      const jpeg = await sharp(raw, { raw: { width: w, height: h, channels: 3 } })
        .withMetadata({ orientation: 6 })
        .jpeg({ quality: 100 })
        .toBuffer();
      const header = await readImageHeader(jpeg);
      expect([header.width, header.height]).toEqual([h, w]);
      const cfg = parsePreprocessorConfig({ size: { height: 40, width: 20 }, do_normalize: false, do_rescale: false });
      const out = await preprocessImage(jpeg, cfg);
      expect(out.shrunkOnLoad).toBe(scale > 1);
      expect([out.width, out.height]).toEqual([20, 40]);
      const plane = 20 * 40;
      const at = (c: number, x: number, y: number): number => out.pixelValues[c * plane + y * 20 + x]!;
      expect(at(0, 10, 5)).toBeGreaterThan(200); // top is red
      expect(at(2, 10, 5)).toBeLessThan(60);
      expect(at(2, 10, 35)).toBeGreaterThan(200); // bottom is blue
      expect(at(0, 10, 35)).toBeLessThan(60);
    });
  }

  it('flattens transparency onto white and expands greyscale to RGB', async () => {
    const cfg = parsePreprocessorConfig({ size: 8, do_normalize: false, do_rescale: false });
    const transparent = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 255, g: 0, b: 0, alpha: 0 } } })
      .png()
      .toBuffer();
    const t = await preprocessImage(transparent, cfg);
    expect(t.pixelValues.every((v) => v === 255)).toBe(true);
    const grey = await sharp(Buffer.alloc(64, 90), { raw: { width: 8, height: 8, channels: 1 } }).png().toBuffer();
    const g = await preprocessImage(grey, cfg);
    expect(g.pixelValues.length).toBe(3 * 64);
    expect(g.pixelValues.every((v) => v === 90)).toBe(true);
  });

  it('uses the first frame of an animated GIF', async () => {
    // Two 16x16 frames stacked: red then blue.
    const frames = new Uint8Array(16 * 32 * 3);
    for (let i = 0; i < 16 * 32; i++) frames.set(i < 256 ? [255, 0, 0] : [0, 0, 255], i * 3);
    const gif = await sharp(frames, { raw: { width: 16, height: 32, channels: 3, pageHeight: 16 } })
      .gif({ delay: [100, 100] })
      .toBuffer();
    const header = await readImageHeader(gif);
    expect(header.frames).toBe(2);
    expect([header.width, header.height]).toEqual([16, 16]);
    const cfg = parsePreprocessorConfig({ size: 16, do_normalize: false, do_rescale: false });
    const out = await preprocessImage(gif, cfg);
    expect([out.width, out.height]).toEqual([16, 16]);
    const plane = 256;
    for (let i = 0; i < plane; i++) {
      expect(out.pixelValues[i]).toBeGreaterThan(240); // R
      expect(out.pixelValues[2 * plane + i]).toBeLessThan(15); // B
    }
  });

  it('resizes by shortest edge and centre-crops the way transformers does', async () => {
    const cfg = parsePreprocessorConfig({
      size: { shortest_edge: 32 },
      do_center_crop: true,
      crop_size: { height: 32, width: 32 },
      do_normalize: false,
      do_rescale: false,
    });
    // 64x48 -> short side 32, long side int(32*64/48) = 42 -> crop 32 wide from left (42-32)//2 = 5
    expect(outputSize(cfg, 64, 48)).toEqual({ width: 32, height: 32 });
    const raw: RawImage = { data: bytes(join(FIXTURES, 'images', 'test_image_64x48.rgb.u8.bin')), width: 64, height: 48, channels: 3 };
    const resized = resizePil(raw, 42, 32, PilResample.BICUBIC);
    const out = await preprocessImage(bytes(join(FIXTURES, 'images', 'test_image_64x48.png')), cfg);
    expect([out.width, out.height]).toEqual([32, 32]);
    for (const [x, y] of [
      [0, 0],
      [31, 0],
      [17, 31],
    ] as const) {
      for (let c = 0; c < 3; c++) {
        expect(out.pixelValues[c * 1024 + y * 32 + x]).toBe(resized.data[(y * 42 + x + 5) * 3 + c]);
      }
    }
  });

  it('reduces big images on load (fast path) within a few levels of the exact resize', async () => {
    // 6.5 x the 56-pixel target on both axes, with edges and texture
    const w = 380;
    const h = 370;
    const raw = new Uint8Array(w * h * 3);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = (y * w + x) * 3;
        raw[i] = 128 + 100 * Math.sin(x / 23);
        raw[i + 1] = x > 150 && x < 260 && y > 80 && y < 300 ? 230 : 30;
        raw[i + 2] = (x * 255) / w;
      }
    }
    const png = await sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
    const cfg = parsePreprocessorConfig({ size: 56, do_normalize: false, do_rescale: false });
    expect(w > 2 * FAST_PATH_GAP * 56 && h > 2 * FAST_PATH_GAP * 56).toBe(true);
    const fast = await preprocessImage(png, cfg);
    const exact = await preprocessImage(png, cfg, undefined, { exactResize: true });
    expect(fast.shrunkOnLoad).toBe(true);
    expect(exact.shrunkOnLoad).toBe(false);
    expect(maxAbsDiff(fast.pixelValues, exact.pixelValues)).toBeLessThanOrEqual(4);
  });
});

describe('bad images are refused with typed errors', () => {
  it('refuses a text file as IMAGE_UNSUPPORTED', async () => {
    const text = new TextEncoder().encode('hello, this is not a picture\n');
    expect(sniffImageFormat(text)).toBeNull();
    await expectError(preprocessImage(text, tinyConfig), 'IMAGE_UNSUPPORTED', /not an image.*JPEG, PNG, WebP or GIF/);
  });

  it('names formats it does not take (HEIC, SVG) and refuses empty input', async () => {
    const heic = new Uint8Array([0, 0, 0, 24, ...new TextEncoder().encode('ftypheic'), 0, 0, 0, 0]);
    await expectError(preprocessImage(heic, tinyConfig), 'IMAGE_UNSUPPORTED', /HEIC/);
    const svg = new TextEncoder().encode('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>');
    await expectError(preprocessImage(svg, tinyConfig), 'IMAGE_UNSUPPORTED', /SVG/);
    await expectError(preprocessImage(new Uint8Array(0), tinyConfig), 'IMAGE_UNSUPPORTED', /empty/);
  });

  it('refuses a truncated JPEG as IMAGE_CORRUPT', async () => {
    const raw = bytes(join(FIXTURES, 'images', 'test_image_64x48.rgb.u8.bin'));
    const jpeg = await sharp(raw, { raw: { width: 64, height: 48, channels: 3 } }).jpeg().toBuffer();
    const truncated = jpeg.subarray(0, Math.floor(jpeg.length * 0.6));
    await expectError(preprocessImage(truncated, tinyConfig), 'IMAGE_CORRUPT', /damaged or truncated/);
  });

  it('refuses a 20000x20000 PNG before decoding it, quickly', async () => {
    // A real PNG header claiming 20000x20000, with a token IDAT: only a decoder would notice.
    const chunk = (type: string, data: Uint8Array): Buffer => {
      const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
      const out = Buffer.alloc(12 + data.length);
      out.writeUInt32BE(data.length, 0);
      body.copy(out, 4);
      out.writeUInt32BE(zlib.crc32(body), 8 + data.length);
      return out;
    };
    const ihdr = Buffer.alloc(13);
    ihdr.writeUInt32BE(20000, 0);
    ihdr.writeUInt32BE(20000, 4);
    ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB
    const png = Buffer.concat([
      Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
      chunk('IHDR', ihdr),
      chunk('IDAT', deflateSync(Buffer.alloc(1000))),
      chunk('IEND', new Uint8Array(0)),
    ]);
    const start = performance.now();
    await expectError(preprocessImage(png, tinyConfig), 'IMAGE_TOO_LARGE', /20000×20000.*limit is 50\.0 megapixels/);
    expect(performance.now() - start).toBeLessThan(2000); // no 1.2 GB decode happened
  });

  it('applies the caller’s pixel and byte limits', async () => {
    const png = await solidRgb(300, 200, [1, 2, 3]);
    await expectError(preprocessImage(png, tinyConfig, { maxBytes: 1 << 20, maxPixels: 59_999 }), 'IMAGE_TOO_LARGE', /300×200/);
    await expectError(preprocessImage(png, tinyConfig, { maxBytes: 100, maxPixels: 1e9 }), 'IMAGE_TOO_LARGE', /MiB/);
    await expect(preprocessImage(png, tinyConfig, { maxBytes: 1 << 20, maxPixels: 60_000 })).resolves.toBeTruthy();
  });
});

describe('parsePreprocessorConfig', () => {
  it('reads the tiny-a config', () => {
    expect(tinyConfig).toEqual({
      doResize: true,
      size: { height: 56, width: 56 },
      resample: 3,
      doCenterCrop: false,
      cropSize: null,
      doRescale: true,
      rescaleFactor: 0.00392156862745098,
      doNormalize: true,
      imageMean: [0.5, 0.5, 0.5],
      imageStd: [0.5, 0.5, 0.5],
    });
  });

  it('names the bad field', () => {
    let error: unknown;
    try {
      parsePreprocessorConfig({ size: { height: 'big', width: 3 } });
    } catch (e) {
      error = e;
    }
    expect(isVistyleError(error, 'CHECKPOINT_INVALID')).toBe(true);
    expect((error as Error).message).toMatch(/preprocessor_config\.json: field "size/);
  });
});
