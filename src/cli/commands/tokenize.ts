// `vistyle tokenize --tokenizer PATH [--jsonl]`: token ids of the text on stdin, for counting the
// tokens of prompts and styles and for checking a tokenizer. PATH is a tokenizer.json or a folder
// holding one (a checkpoint or a built model). Without --jsonl the whole of stdin is one text (byte
// for byte: `echo` adds a newline, `printf` does not) and one JSON array is printed; with --jsonl
// every non-blank input line is a JSON string and every output line the JSON array of its ids.
// Special tokens written in the text (`<|im_start|>`) count as one token each, as in prompts.
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import type { Command } from 'commander';
import { VistyleError } from '../../errors.js';
import { loadTokenizer } from '../../engine/tokenizer.js';

export interface TokenizeOptions {
  tokenizer: string;
  jsonl?: boolean;
}

async function writeLine(output: Writable, line: string): Promise<void> {
  if (!output.write(`${line}\n`)) await once(output, 'drain');
}

async function readAll(input: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of input) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** Runs the command over `input`, writing to `output`. Throws VistyleError on bad input. */
export async function runTokenize(options: TokenizeOptions, input: Readable, output: Writable): Promise<void> {
  const tokenizer = await loadTokenizer(options.tokenizer);
  if (!options.jsonl) {
    await writeLine(output, JSON.stringify(tokenizer.encode(await readAll(input))));
    return;
  }
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY });
  let lineNumber = 0;
  for await (const line of lines) {
    lineNumber++;
    if (line.trim() === '') continue;
    let text: unknown;
    try {
      text = JSON.parse(line);
    } catch {
      throw new VistyleError('DATA_INVALID', `stdin line ${lineNumber} is not valid JSON (with --jsonl each line is a JSON string)`);
    }
    if (typeof text !== 'string') {
      throw new VistyleError('DATA_INVALID', `stdin line ${lineNumber} is a JSON ${Array.isArray(text) ? 'array' : text === null ? 'null' : typeof text}, not a string`);
    }
    await writeLine(output, JSON.stringify(tokenizer.encode(text)));
  }
}

export function registerTokenizeCommand(program: Command): void {
  program
    .command('tokenize')
    .description('print the token ids of the text on stdin (as a JSON array)')
    .requiredOption('--tokenizer <path>', 'tokenizer.json, or a folder holding one (checkpoint or built model)')
    .option('--jsonl', 'each input line is a JSON string; print one JSON array of ids per line')
    .action(async (options: TokenizeOptions) => {
      await runTokenize(options, process.stdin, process.stdout);
    });
}
