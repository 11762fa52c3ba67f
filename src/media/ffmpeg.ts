// Short videos through ffmpeg, when it is installed: ffprobe reads the container (streams,
// duration), then one ffmpeg run seeks to each sample time and writes one small JPEG per frame.
// Both run as child processes (tool.ts: no shell, a time limit, bounded output) on a private copy
// of the file in a temporary folder, told which demuxer to use and allowed the `file` protocol
// only, so a crafted file can neither pick its own demuxer nor make ffmpeg open anything else.
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { mediaError } from './errors.js';
import type { VideoContainer } from './sniff.js';
import { findOnPath, runTool } from './tool.js';

export interface FfmpegTools {
  ffmpeg: string;
  ffprobe: string;
}

/** ffmpeg and ffprobe on PATH (both are needed), or null. */
export function findFfmpeg(env: NodeJS.ProcessEnv = process.env): FfmpegTools | null {
  const ffmpeg = findOnPath('ffmpeg', env);
  const ffprobe = findOnPath('ffprobe', env);
  return ffmpeg && ffprobe ? { ffmpeg, ffprobe } : null;
}

const checked = new Map<string, Promise<string | null>>();

/**
 * ffmpeg's version line when ffmpeg and ffprobe are on PATH and ffmpeg runs, else null. Checked
 * once per PATH value (a few milliseconds), so it is cheap to call per request.
 */
export function ffmpegVersion(env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const key = env.PATH ?? '';
  let version = checked.get(key);
  if (!version) {
    version = (async () => {
      const tools = findFfmpeg(env);
      if (!tools) return null;
      const run = await runTool(tools.ffmpeg, ['-hide_banner', '-version'], { timeoutMs: 10_000, maxStdoutBytes: 64 * 1024 });
      if (run.code !== 0) return null;
      return run.stdout.toString('utf8').split('\n')[0]?.trim() || 'ffmpeg';
    })();
    checked.set(key, version);
  }
  return version;
}

/** Whether this machine can read videos (ffmpeg and ffprobe on PATH, and ffmpeg runs). For `vistyle doctor`. */
export async function ffmpegAvailable(env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  return (await ffmpegVersion(env)) !== null;
}

export interface VideoLimits {
  /** Frames to take, evenly over the length. */
  frames: number;
  /** Longest video accepted. */
  maxSeconds: number;
  /** Longest side of each frame (smaller videos keep their size). */
  maxSide: number;
  /** How long ffprobe and ffmpeg may run, each. */
  timeoutMs: number;
}

export interface VideoFrames {
  /** JPEG frames, in time order. */
  frames: Uint8Array[];
  /** Length in seconds, when the container says. */
  durationS: number | undefined;
  /** Seconds into the video of each frame. */
  times: number[];
  width: number;
  height: number;
}

interface ProbedStream {
  index: number;
  codec_type?: string;
  codec_name?: string;
  width?: number;
  height?: number;
  duration?: string;
  nb_frames?: string;
  start_time?: string;
  disposition?: { attached_pic?: number };
}

interface Probe {
  streams?: ProbedStream[];
  format?: { duration?: string; start_time?: string };
}

const FILE_ONLY = ['-protocol_whitelist', 'file'];
/** One JPEG frame of at most maxSide x maxSide at q:v 3 is well under this. */
const MAX_FRAME_BYTES = 8 * 1024 * 1024;

function seconds(value: string | undefined): number | undefined {
  const parsed = value === undefined ? Number.NaN : Number(value);
  return Number.isFinite(parsed) && parsed >= 0 ? parsed : undefined;
}

/** Sample times: the middle of N equal slices of the video (never its very first or last instant). */
export function sampleTimes(durationS: number, count: number, startS = 0): number[] {
  return Array.from({ length: count }, (_, i) => startS + (durationS * (i + 0.5)) / count);
}

/** Videos read at once: every waiting request reads its clip early, and a full queue of them
 * must not become a hundred ffmpeg processes next to the engine. */
export const MAX_CONCURRENT_VIDEOS = 2;
let running = 0;
const waiting: (() => void)[] = [];

/** Videos being read now, and waiting for their turn (for tests and diagnostics). */
export function videoReads(): { running: number; waiting: number } {
  return { running, waiting: waiting.length };
}

async function withVideoSlot<T>(work: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  if (running >= MAX_CONCURRENT_VIDEOS) {
    await new Promise<void>((resolve, reject) => {
      const go = () => {
        signal?.removeEventListener('abort', onAbort);
        resolve();
      };
      const onAbort = () => {
        const at = waiting.indexOf(go);
        if (at >= 0) waiting.splice(at, 1);
        reject(mediaError('video-unreadable', 'cancelled while waiting to read the video', { aborted: true }));
      };
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      waiting.push(go);
    });
  }
  running++;
  try {
    return await work();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/**
 * N frames of a video, evenly over its length. Throws (mediaError) video-no-ffmpeg,
 * video-no-picture, video-empty, video-too-long, video-unreadable; CANCELLED is left to the caller
 * (an aborted run reads as unreadable, and the caller knows its signal fired).
 */
export async function videoFrames(
  bytes: Uint8Array,
  container: VideoContainer,
  limits: VideoLimits,
  options: { signal?: AbortSignal; env?: NodeJS.ProcessEnv } = {},
): Promise<VideoFrames> {
  const tools = (await ffmpegVersion(options.env)) === null ? null : findFfmpeg(options.env);
  if (!tools) throw mediaError('video-no-ffmpeg', 'ffmpeg is not installed on this server (it reads videos); send a picture instead');
  return withVideoSlot(() => readFrames(tools, bytes, container, limits, options.signal), options.signal);
}

async function readFrames(tools: FfmpegTools, bytes: Uint8Array, container: VideoContainer, limits: VideoLimits, signal: AbortSignal | undefined): Promise<VideoFrames> {
  const dir = await mkdtemp(join(tmpdir(), 'vistyle-video-'));
  try {
    const input = join(dir, 'input');
    await writeFile(input, bytes);
    const probe = await probeVideo(tools, input, container, limits, signal);
    const stream = probe.streams?.find((s) => s.codec_type === 'video' && !s.disposition?.attached_pic);
    if (!stream) {
      if (seconds(probe.format?.duration) === 0) throw mediaError('video-empty', 'the video is empty (zero length, no stream)');
      throw mediaError('video-no-picture', 'the file has no video stream (only sound, or a cover picture)', {
        streams: (probe.streams ?? []).map((s) => s.codec_type ?? '?').join(','),
      });
    }
    const durationS = seconds(stream.duration) ?? seconds(probe.format?.duration);
    const startS = seconds(stream.start_time) ?? seconds(probe.format?.start_time) ?? 0;
    const declaredFrames = seconds(stream.nb_frames);
    if (durationS !== undefined && durationS > limits.maxSeconds) {
      throw mediaError('video-too-long', `the video is ${durationS.toFixed(1)} s long; the limit is ${limits.maxSeconds} s`, {
        seconds: Math.ceil(durationS),
        limit: limits.maxSeconds,
      });
    }
    if (durationS === 0 || declaredFrames === 0) throw mediaError('video-empty', 'the video has no frames (zero length)', { durationS, declaredFrames });
    // Without a length in the container (some WebM recordings), the first frame is all we can place.
    const count = Math.max(1, Math.min(limits.frames, declaredFrames ?? limits.frames));
    const times = durationS === undefined ? [startS] : sampleTimes(durationS, count, startS);
    const frames = await extractFrames(tools, dir, input, container, stream.index, times, limits, signal);
    if (frames.length === 0) throw mediaError('video-empty', 'ffmpeg found no frame to show in the video', { durationS });
    return { frames: frames.map((f) => f.bytes), times: frames.map((f) => f.time), durationS, width: stream.width ?? 0, height: stream.height ?? 0 };
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function probeVideo(tools: FfmpegTools, input: string, container: VideoContainer, limits: VideoLimits, signal?: AbortSignal): Promise<Probe> {
  const run = await runTool(
    tools.ffprobe,
    ['-v', 'error', ...FILE_ONLY, '-f', container, '-print_format', 'json', '-show_format', '-show_streams', input],
    { timeoutMs: limits.timeoutMs, maxStdoutBytes: 1024 * 1024, ...(signal ? { signal } : {}) },
  );
  if (run.code !== 0) throw unreadable('ffprobe', run);
  try {
    return JSON.parse(run.stdout.toString('utf8')) as Probe;
  } catch (cause) {
    throw mediaError('video-unreadable', 'ffprobe wrote something that is not JSON', {}, cause);
  }
}

async function extractFrames(
  tools: FfmpegTools,
  dir: string,
  input: string,
  container: VideoContainer,
  streamIndex: number,
  times: number[],
  limits: VideoLimits,
  signal?: AbortSignal,
): Promise<{ bytes: Uint8Array; time: number }[]> {
  // One input per sample time, each with a fast seek (-ss before -i: from the nearest keyframe,
  // then decoded up to the exact time), and one single-frame output per input.
  const args = ['-hide_banner', '-nostdin', '-loglevel', 'error', '-y'];
  for (const time of times) args.push(...FILE_ONLY, '-ss', time.toFixed(3), '-f', container, '-i', input);
  const side = String(limits.maxSide);
  const scale = `scale=w='min(${side},iw)':h='min(${side},ih)':force_original_aspect_ratio=decrease:force_divisible_by=2`;
  times.forEach((_, i) => {
    args.push('-map', `${i}:${streamIndex}`, '-frames:v', '1', '-vf', scale, '-pix_fmt', 'yuvj420p', '-q:v', '3', '-fs', String(MAX_FRAME_BYTES), '-f', 'image2', join(dir, `frame-${i}.jpg`));
  });
  const run = await runTool(tools.ffmpeg, args, { timeoutMs: limits.timeoutMs, maxStdoutBytes: 64 * 1024, ...(signal ? { signal } : {}) });
  const written = new Set(await readdir(dir));
  const frames: { bytes: Uint8Array; time: number }[] = [];
  for (const [i, time] of times.entries()) {
    const name = `frame-${i}.jpg`;
    if (!written.has(name)) continue;
    const bytes = await readFile(join(dir, name));
    if (bytes.length > 0) frames.push({ bytes: new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), time });
  }
  // A damaged stretch may cost a frame or two; only a run that gave nothing is a failure.
  if (frames.length === 0 && (run.code !== 0 || run.timedOut || run.aborted)) throw unreadable('ffmpeg', run);
  return frames;
}

function unreadable(tool: string, run: { code: number | null; timedOut: boolean; aborted: boolean; stderr: string; spawnError?: string }) {
  const why = run.spawnError
    ? `could not start ${tool} (${run.spawnError})`
    : run.timedOut
      ? `${tool} took too long`
      : run.aborted
        ? `${tool} was stopped (cancelled)`
        : `${tool} could not read it (exit ${run.code})`;
  return mediaError('video-unreadable', `the video cannot be read: ${why}`, {
    tool,
    exitCode: run.code,
    timedOut: run.timedOut,
    aborted: run.aborted,
    stderr: run.stderr.trim().split('\n').slice(-3).join(' | ').slice(0, 500),
  });
}
