// Animations and videos for tests, made on the spot: GIFs written byte by byte (any frame count,
// exact frame colours, a frame damaged on purpose) and videos encoded by the real ffmpeg from its
// own test patterns. `ffmpegOrSkip` says whether video tests can run here: without ffmpeg they
// skip with a message, except under CI=true, where ffmpeg is installed (.ci/run) and missing it
// is a failure.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findFfmpeg } from '../../src/media/ffmpeg.js';

/**
 * An animated GIF of `colors.length` frames of width x height, frame i filled with colours[i]
 * ([r, g, b]), each shown `delayMs` (GIF stores hundredths). With `damageFrame`, that frame's
 * image data is replaced by bytes no LZW decoder accepts.
 */
export function animatedGif(colors: [number, number, number][], options: { width?: number; height?: number; delayMs?: number; damageFrame?: number } = {}): Buffer {
  const width = options.width ?? 8;
  const height = options.height ?? 6;
  const delay = Math.round((options.delayMs ?? 100) / 10);
  // A 256-entry palette holds up to 256 distinct colours; frame i uses palette index i % 256 via
  // a local colour table of 2 entries (index 0 = its colour), which keeps every frame exact.
  const parts: number[] = [];
  const push = (...bytes: number[]) => parts.push(...bytes);
  const u16 = (v: number) => push(v & 0xff, (v >> 8) & 0xff);
  push(...Buffer.from('GIF89a'));
  u16(width);
  u16(height);
  push(0x00, 0, 0); // no global colour table
  // NETSCAPE2.0 loop forever
  push(0x21, 0xff, 0x0b, ...Buffer.from('NETSCAPE2.0'), 0x03, 0x01, 0x00, 0x00, 0x00);
  const pixels = width * height;
  colors.forEach((color, index) => {
    push(0x21, 0xf9, 0x04, 0x04, delay & 0xff, (delay >> 8) & 0xff, 0x00, 0x00); // graphic control: dispose "do not"
    push(0x2c);
    u16(0);
    u16(0);
    u16(width);
    u16(height);
    push(0x80); // local colour table of 2 entries
    push(...color, 0, 0, 0);
    if (options.damageFrame === index) {
      // min code size 2, then a sub-block of codes past the table: "Invalid frame data"
      push(0x02, 0x04, 0xff, 0xff, 0xff, 0xff, 0x00);
      return;
    }
    push(...lzwAllZeros(pixels));
  });
  push(0x3b);
  return Buffer.from(parts);
}

/** LZW data (min code size 2) for `count` pixels of colour index 0, as GIF sub-blocks. */
function lzwAllZeros(count: number): number[] {
  // Clear, then each pixel as a literal 0, re-clearing before the code width would grow: every
  // code stays 3 bits, simple and valid.
  const codes: number[] = [4];
  let sinceClear = 0;
  for (let i = 0; i < count; i++) {
    if (sinceClear === 2) {
      codes.push(4);
      sinceClear = 0;
    }
    codes.push(0);
    sinceClear++;
  }
  codes.push(5); // end of information
  const bytes: number[] = [];
  let buffer = 0;
  let bits = 0;
  for (const code of codes) {
    buffer |= code << bits;
    bits += 3;
    while (bits >= 8) {
      bytes.push(buffer & 0xff);
      buffer >>= 8;
      bits -= 8;
    }
  }
  if (bits > 0) bytes.push(buffer & 0xff);
  const out = [0x02];
  for (let i = 0; i < bytes.length; i += 255) {
    const block = bytes.slice(i, i + 255);
    out.push(block.length, ...block);
  }
  out.push(0x00);
  return out;
}

/** Evenly spread, clearly different colours for frame i of n. */
export function frameColors(n: number): [number, number, number][] {
  return Array.from({ length: n }, (_, i) => [Math.round((i * 255) / Math.max(1, n - 1)), 255 - Math.round((i * 255) / Math.max(1, n - 1)), 40]);
}

/** Whether ffmpeg can be used here; logs why not, and fails under CI=true (CI installs it). */
export function ffmpegOrSkip(what: string): boolean {
  if (findFfmpeg()) return true;
  if (process.env.CI === 'true') throw new Error(`ffmpeg and ffprobe must be on PATH under CI=true (.ci/run installs them); needed for ${what}`);
  console.warn(`skipping ${what}: ffmpeg/ffprobe are not on PATH (apt-get install ffmpeg)`);
  return false;
}

/**
 * A file made by ffmpeg from arguments between `-y` and the output path, e.g.
 * ['-f', 'lavfi', '-i', 'testsrc=duration=2:size=96x64:rate=10', '-c:v', 'mpeg4'].
 */
export function ffmpegFile(args: string[], extension = 'mp4'): Buffer {
  const dir = mkdtempSync(join(tmpdir(), 'vistyle-media-test-'));
  try {
    const out = join(dir, `out.${extension}`);
    execFileSync(findFfmpeg()!.ffmpeg, ['-hide_banner', '-loglevel', 'error', '-y', ...args, out], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 60_000 });
    return readFileSync(out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A short test-pattern clip: `seconds` long, colour bars moving (testsrc). */
export function testVideo(seconds = 2, extension: 'mp4' | 'webm' = 'mp4', size = '96x64'): Buffer {
  const codec = extension === 'webm' ? ['-c:v', 'libvpx', '-b:v', '200k'] : ['-c:v', 'mpeg4', '-pix_fmt', 'yuv420p'];
  return ffmpegFile(['-f', 'lavfi', '-i', `testsrc=duration=${seconds}:size=${size}:rate=10`, ...codec], extension);
}

/**
 * A clip whose frames are solid colours in turn, one colour per `secondsEach` (so a sampled frame
 * tells which part of the clip it came from).
 */
export function colourVideo(colours: string[], secondsEach = 1): Buffer {
  const inputs = colours.flatMap((colour) => ['-f', 'lavfi', '-i', `color=c=${colour}:size=64x48:rate=10:duration=${secondsEach}`]);
  const filter = `${colours.map((_, i) => `[${i}:v]`).join('')}concat=n=${colours.length}:v=1:a=0[v]`;
  return ffmpegFile([...inputs, '-filter_complex', filter, '-map', '[v]', '-c:v', 'mpeg4', '-q:v', '2', '-pix_fmt', 'yuv420p']);
}

/** An MP4 with sound only. */
export function audioOnlyMp4(): Buffer {
  return ffmpegFile(['-f', 'lavfi', '-i', 'anullsrc=r=8000:cl=mono', '-t', '1', '-c:a', 'aac']);
}
