// Input rows for the styled-data maker: `{url, caption}` per line (JSONL), a JSON array of such
// objects, or CSV whose header names a `url` and a `caption` column (any order, any other columns).
// Rows are streamed: the SA-1B caption set is large and --limit usually reads only its head.
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { extname } from 'node:path';
import { createInterface } from 'node:readline';
import { VistyleError } from '../../src/errors.js';
import { CsvParser, CsvSyntaxError } from './csv.js';

export interface InputRow {
  url: string;
  caption: string;
  /** 1-based line (JSONL, CSV) or 1-based index (JSON array) where the row is. */
  line: number;
}

/** A row that could not be used, with the reason. */
export interface InputProblem {
  line: number;
  message: string;
}

export type InputItem = { row: InputRow } | { problem: InputProblem };

export type InputFormat = 'jsonl' | 'json' | 'csv';

function dataError(file: string, message: string, cause?: unknown): VistyleError {
  return new VistyleError('DATA_INVALID', `${file}: ${message}`, cause === undefined ? { details: { file } } : { cause, details: { file } });
}

/** CSV by extension; otherwise JSON array when the first non-blank character is `[`, else JSONL. */
export async function detectInputFormat(file: string): Promise<InputFormat> {
  if (extname(file).toLowerCase() === '.csv') return 'csv';
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (error) {
    throw dataError(file, `cannot open (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, error);
  }
  try {
    const buffer = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, 0);
    const head = buffer.subarray(0, bytesRead).toString('utf8').replace(/^\uFEFF/, '').trimStart();
    return head.startsWith('[') ? 'json' : 'jsonl';
  } finally {
    await handle.close();
  }
}

function checkRow(value: unknown, line: number): InputItem {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    return { problem: { line, message: 'not a JSON object' } };
  }
  const { url, caption } = value as { url?: unknown; caption?: unknown };
  if (typeof url !== 'string' || url.trim() === '') return { problem: { line, message: 'no "url" text' } };
  if (typeof caption !== 'string' || caption.trim() === '') return { problem: { line, message: 'no "caption" text' } };
  return { row: { url: url.trim(), caption: caption.trim(), line } };
}

/** Every row of the input in order; unusable rows come as problems (the run goes on without them). */
export async function* readInputRows(file: string): AsyncGenerator<InputItem> {
  const format = await detectInputFormat(file);
  if (format === 'csv') yield* readCsvRows(file);
  else if (format === 'json') yield* readJsonArrayRows(file);
  else yield* readJsonlRows(file);
}

async function* readJsonlRows(file: string): AsyncGenerator<InputItem> {
  const lines = createInterface({ input: createReadStream(file, { encoding: 'utf8' }), crlfDelay: Infinity });
  let line = 0;
  for await (const raw of lines) {
    line++;
    const text = (line === 1 ? raw.replace(/^\uFEFF/, '') : raw).trim();
    if (text === '') continue;
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      yield { problem: { line, message: 'not valid JSON' } };
      continue;
    }
    yield checkRow(value, line);
  }
}

async function* readJsonArrayRows(file: string): AsyncGenerator<InputItem> {
  const { readFile } = await import('node:fs/promises');
  let value: unknown;
  try {
    value = JSON.parse((await readFile(file, 'utf8')).replace(/^\uFEFF/, ''));
  } catch (error) {
    throw dataError(file, `not valid JSON (${(error as Error).message})`, error);
  }
  if (!Array.isArray(value)) throw dataError(file, 'expected a JSON array of {url, caption} objects');
  for (const [index, item] of value.entries()) yield checkRow(item, index + 1);
}

async function* readCsvRows(file: string): AsyncGenerator<InputItem> {
  const parser = new CsvParser();
  let columns: { url: number; caption: number; count: number } | null = null;
  function* take(records: ReturnType<CsvParser['push']>): Generator<InputItem> {
    for (const record of records) {
      if (!columns) {
        const names = record.fields.map((name) => name.trim().toLowerCase());
        const url = names.indexOf('url');
        const caption = names.indexOf('caption');
        if (url < 0 || caption < 0) {
          throw dataError(file, `the CSV header must name a "url" and a "caption" column (found: ${record.fields.join(', ')})`);
        }
        columns = { url, caption, count: names.length };
        continue;
      }
      yield checkRow({ url: record.fields[columns.url], caption: record.fields[columns.caption] }, record.line);
    }
  }
  try {
    for await (const chunk of createReadStream(file, { encoding: 'utf8' })) yield* take(parser.push(chunk as string));
    yield* take(parser.end());
  } catch (error) {
    if (error instanceof CsvSyntaxError) throw dataError(file, `line ${error.line}: ${error.message}`, error);
    if (error instanceof VistyleError) throw error;
    throw dataError(file, `cannot read (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`, error);
  }
  if (!columns) throw dataError(file, 'the CSV file is empty (it needs a header with "url" and "caption")');
}
