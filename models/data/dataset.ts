// The styled Q/A dataset: what `vistyle data make` writes and the LoRA trainer reads. One sample is
// `{question, ans, url}` — the original work's format (its files are JSON arrays) — plus, from the
// maker, the `caption` it was made from and the `style` id. vistyle writes JSONL (one sample a line,
// appended as each is made, so a crash loses at most the line being written) and reads both.
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, fstatSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { VistyleError } from '../../src/errors.js';

export const StyledSampleSchema = z.object({
  question: z.string().trim().min(1),
  ans: z.string().trim().min(1),
  url: z.string().trim().min(1),
  caption: z.string().optional(),
  style: z.string().optional(),
});
export type StyledSample = z.infer<typeof StyledSampleSchema>;

function dataError(file: string, message: string): VistyleError {
  return new VistyleError('DATA_INVALID', `${file}: ${message}`, { details: { file } });
}

/**
 * Reads a whole dataset (JSON array or JSONL). `answer` is accepted for `ans`. A bad sample is an
 * error naming its line (JSONL) or index (JSON array), unless `skipInvalid` is set.
 */
export function readStyledDataset(file: string, options: { skipInvalid?: boolean } = {}): { samples: StyledSample[]; invalid: number } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (error) {
    throw dataError(file, `cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
  const samples: StyledSample[] = [];
  let invalid = 0;
  const take = (value: unknown, where: string): void => {
    const candidate =
      value && typeof value === 'object' && !('ans' in value) && 'answer' in value
        ? { ...(value as Record<string, unknown>), ans: (value as { answer: unknown }).answer }
        : value;
    const parsed = StyledSampleSchema.safeParse(candidate);
    if (parsed.success) {
      samples.push(parsed.data);
      return;
    }
    invalid++;
    if (!options.skipInvalid) {
      const issue = parsed.error.issues[0]!;
      throw dataError(file, `${where}: ${issue.path.join('.') || 'sample'}: ${issue.message}`);
    }
  };
  if (text.trimStart().startsWith('[')) {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw dataError(file, `not valid JSON (${(error as Error).message})`);
    }
    if (!Array.isArray(value)) throw dataError(file, 'expected a JSON array');
    value.forEach((item, index) => take(item, `sample ${index + 1}`));
  } else {
    text.split(/\r?\n/).forEach((line, index) => {
      if (line.trim() === '') return;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        invalid++;
        if (!options.skipInvalid) throw dataError(file, `line ${index + 1}: not valid JSON`);
        return;
      }
      take(value, `line ${index + 1}`);
    });
  }
  return { samples, invalid };
}

/**
 * The urls already in an output file, for resuming. A last line cut short by a crash is ignored
 * (its row is made again).
 */
export function readDoneUrls(file: string): Set<string> {
  const done = new Set<string>();
  if (!existsSync(file)) return done;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    try {
      const value = JSON.parse(line) as { url?: unknown };
      if (typeof value.url === 'string') done.add(value.url);
    } catch {
      // a partial line from an interrupted run
    }
  }
  return done;
}

/** Appends samples to a JSONL file, one complete line per write. */
export class JsonlAppender {
  private fd: number;

  constructor(readonly file: string) {
    try {
      // `--out data/pirate.jsonl` on a fresh checkout: make the folder rather than fail.
      mkdirSync(dirname(file), { recursive: true });
      this.fd = openSync(file, 'a+');
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new VistyleError('DATA_INVALID', `${file}: cannot open for writing (${reason})`, { cause: error, details: { file } });
    }
    // If an earlier run died mid-line, start on a fresh line so the next sample stays parseable.
    const size = fstatSync(this.fd).size;
    if (size > 0) {
      const last = Buffer.alloc(1);
      readSync(this.fd, last, 0, 1, size - 1);
      if (last[0] !== 0x0a) writeSync(this.fd, '\n');
    }
  }

  append(value: unknown): void {
    writeSync(this.fd, `${JSON.stringify(value)}\n`);
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
