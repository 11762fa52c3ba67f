// The safetensors format: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?}, then the raw little-endian data.
// Reads are lazy: the header is parsed on open and each tensor is read from the file handle when
// asked for, so a multi-GB checkpoint is never held in memory at once.
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { basename } from 'node:path';
import { VistyleError } from '../../src/errors.js';
import { bf16ToFloat32, float32ToBf16, float32ToHalf, halfToFloat32 } from './dtype.js';

export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute byte offsets in the file. */
  begin: number;
  end: number;
}

function invalid(message: string): VistyleError {
  return new VistyleError('CHECKPOINT_INVALID', message);
}

export function elementCount(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Reads exactly `length` bytes at `position` (readSync may return short reads). */
function readExactly(fd: number, length: number, position: number, file: string): Buffer {
  const out = Buffer.allocUnsafe(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, out, done, Math.min(length - done, 1 << 30), position + done);
    if (n === 0) throw invalid(`${file}: file is truncated (wanted ${length} bytes at ${position})`);
    done += n;
  }
  return out;
}

export class SafetensorsFile {
  readonly path: string;
  readonly entries: ReadonlyMap<string, TensorEntry>;
  readonly metadata: Record<string, string>;
  private fd: number | undefined;

  private constructor(path: string, fd: number, entries: Map<string, TensorEntry>, metadata: Record<string, string>) {
    this.path = path;
    this.fd = fd;
    this.entries = entries;
    this.metadata = metadata;
  }

  static open(path: string): SafetensorsFile {
    const file = basename(path);
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (error) {
      throw new VistyleError('CHECKPOINT_INVALID', `${file}: cannot open (${(error as Error).message})`, { cause: error });
    }
    try {
      const lenBuf = readExactly(fd, 8, 0, file);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (!Number.isSafeInteger(headerLen) || headerLen <= 0 || headerLen > 100_000_000) {
        throw invalid(`${file}: not a safetensors file (bad header length)`);
      }
      let header: unknown;
      try {
        header = JSON.parse(readExactly(fd, headerLen, 8, file).toString('utf8'));
      } catch (error) {
        if (error instanceof VistyleError) throw error;
        throw invalid(`${file}: safetensors header is not valid JSON`);
      }
      if (typeof header !== 'object' || header === null || Array.isArray(header)) {
        throw invalid(`${file}: safetensors header is not an object`);
      }
      const dataStart = 8 + headerLen;
      const entries = new Map<string, TensorEntry>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        const info = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
        const dtype = info?.dtype as SafetensorsDtype;
        if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) {
          throw invalid(`${file}: tensor ${name} has unsupported dtype ${String(info?.dtype)}`);
        }
        const shape = info.shape;
        const offsets = info.data_offsets;
        if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
          throw invalid(`${file}: tensor ${name} has an invalid shape`);
        }
        if (!Array.isArray(offsets) || offsets.length !== 2) {
          throw invalid(`${file}: tensor ${name} has invalid data_offsets`);
        }
        const [b, e] = offsets as [number, number];
        if (e - b !== elementCount(shape as number[]) * DTYPE_BYTES[dtype]) {
          throw invalid(`${file}: tensor ${name} data size does not match its shape and dtype`);
        }
        entries.set(name, { name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
      }
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  entry(name: string): TensorEntry {
    const entry = this.entries.get(name);
    if (!entry) throw invalid(`${basename(this.path)}: tensor ${name} is missing`);
    return entry;
  }

  /** The tensor's raw little-endian bytes. */
  readRaw(name: string): Buffer {
    const entry = this.entry(name);
    if (this.fd === undefined) throw new Error(`${this.path} is closed`);
    return readExactly(this.fd, entry.end - entry.begin, entry.begin, basename(this.path));
  }

  /** The tensor as float32 (bf16 and fp16 are widened exactly). */
  readFloat32(name: string): Float32Array {
    const entry = this.entry(name);
    const raw = this.readRaw(name);
    return rawToFloat32(raw, entry.dtype, `${basename(this.path)}: tensor ${name}`);
  }

  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Converts little-endian tensor bytes to float32. The Buffer may be reused as the result's storage. */
export function rawToFloat32(raw: Buffer, dtype: SafetensorsDtype, what: string): Float32Array {
  const n = raw.length / DTYPE_BYTES[dtype];
  // Buffer.allocUnsafe may hand out a pooled, unaligned slice; copy when it is not aligned
  const aligned = (bytes: number): Buffer => (raw.byteOffset % bytes === 0 ? raw : Buffer.from(raw));
  switch (dtype) {
    case 'F32': {
      const b = aligned(4);
      return new Float32Array(b.buffer, b.byteOffset, n);
    }
    case 'BF16': {
      const b = aligned(2);
      return bf16ToFloat32(new Uint16Array(b.buffer, b.byteOffset, n));
    }
    case 'F16': {
      const b = aligned(2);
      return halfToFloat32(new Uint16Array(b.buffer, b.byteOffset, n));
    }
    case 'F64': {
      const b = aligned(8);
      return Float32Array.from(new Float64Array(b.buffer, b.byteOffset, n));
    }
    default:
      throw invalid(`${what} has dtype ${dtype}, expected a float type (F32, F16, BF16)`);
  }
}

export interface TensorToWrite {
  name: string;
  dtype: 'F32' | 'F16' | 'BF16';
  shape: number[];
  /** Called once, when the tensor's bytes are written; returns float32 values to convert. */
  data: () => Float32Array;
}

/**
 * Writes a safetensors file tensor by tensor: only one tensor's data is in memory at a time.
 * Tensors are stored in the given order.
 */
export function writeSafetensors(path: string, tensors: TensorToWrite[], metadata: Record<string, string> = { format: 'pt' }): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const t of tensors) {
    const bytes = elementCount(t.shape) * DTYPE_BYTES[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((json.length + 8) % 8)) % 8); // data starts 8-byte aligned
  const headerBytes = Buffer.from(json, 'utf8');
  const fd = openSync(path, 'w');
  try {
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(headerBytes.length));
    writeSync(fd, len);
    writeSync(fd, headerBytes);
    for (const t of tensors) {
      const values = t.data();
      if (values.length !== elementCount(t.shape)) {
        throw new Error(`tensor ${t.name}: ${values.length} values for shape [${t.shape.join(',')}]`);
      }
      const encoded = t.dtype === 'F32' ? values : t.dtype === 'F16' ? float32ToHalf(values) : float32ToBf16(values);
      writeAll(fd, new Uint8Array(encoded.buffer, encoded.byteOffset, encoded.byteLength));
    }
  } finally {
    closeSync(fd);
  }
}

export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) {
    done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30));
  }
}
