// `vistyle data make`: styled Q/A training data from captioned photos through an OpenAI-compatible
// chat API (DeepSeek by default). `vistyle data check`: validate a dataset for the trainer.
import type { Command } from 'commander';
import { readStyledDataset } from '../../../models/data/dataset.js';
import {
  DATA_API_KEY_ENVS,
  makeStyledData,
  resolveDataApiConfig,
  terminalProgress,
  type MakeDataSummary,
} from '../../../models/data/maker.js';
import { VistyleError } from '../../errors.js';
import { registerSecret } from '../../log.js';
import { openStyleRegistry, unknownStyleError } from '../../styles/registry.js';

interface MakeFlags {
  input: string;
  style: string;
  out: string;
  apiBase?: string;
  apiModel?: string;
  concurrency: string;
  limit?: string;
  rpm?: string;
  timeout: string;
  maxAttempts: string;
  stylesFile?: string;
  progress: boolean;
  json?: boolean;
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new VistyleError('CONFIG_INVALID', `${flag} must be a positive whole number, not "${value}"`);
  return n;
}

export function formatSummary(summary: MakeDataSummary): string {
  const lines = [
    `made ${summary.made}, failed ${summary.failed}, skipped ${summary.skipped} (already done)` +
      (summary.invalid ? `, ${summary.invalid} unusable input rows` : ''),
    `tokens: ${summary.usage.totalTokens} (prompt ${summary.usage.promptTokens}, completion ${summary.usage.completionTokens}) in ${summary.requests} requests, ${(summary.elapsedMs / 1000).toFixed(1)} s`,
    `output: ${summary.output}`,
  ];
  for (const failure of summary.failures.slice(0, 5)) lines.push(`failed: line ${failure.line} ${failure.url}: ${failure.error}`);
  if (summary.failed > 0) lines.push('run the same command again to retry the failed rows');
  if (summary.stoppedBecause) lines.push(`stopped early: ${summary.stoppedBecause}`);
  return `${lines.join('\n')}\n`;
}

/**
 * A run that tried rows and made none of them failed as a whole (exit status 1), so that a script
 * or a trainer after it does not go on with no data. Some rows made and some failed is a success
 * that says to run again (a re-run resumes and retries only the failed rows).
 */
export function nothingMadeError(summary: MakeDataSummary): VistyleError | null {
  if (summary.made > 0) return null;
  if (summary.failed > 0) {
    const first = summary.failures[0];
    return new VistyleError(
      'DATA_INVALID',
      `every row failed (${summary.failed}); nothing was added to ${summary.output}` + (first ? ` (first failure: line ${first.line}: ${first.error})` : ''),
    );
  }
  if (summary.invalid > 0 && summary.skipped === 0) {
    return new VistyleError('DATA_INVALID', `no usable input rows (${summary.invalid} rows without a url or caption, or not valid JSON/CSV)`);
  }
  return null;
}

export function registerDataCommands(program: Command): void {
  const data = program.command('data').description('make and check styled training data');

  data
    .command('make')
    .description(`restyle captioned photos into Q/A pairs with a chat API (key from ${DATA_API_KEY_ENVS.join(', ')})`)
    .requiredOption('--input <file>', 'JSONL {"url","caption"} rows, or CSV with url and caption columns')
    .requiredOption('--style <id>', 'style whose dataPrompt gives the voice (any case)')
    .requiredOption('--out <file>', 'JSONL output {question, ans, url, caption, style}; a re-run resumes it')
    .option('--api-base <url>', 'OpenAI-compatible API base (default VISTYLE_DATA_API_BASE, then https://api.deepseek.com)')
    .option('--api-model <name>', 'model name (default VISTYLE_DATA_API_MODEL, then deepseek-chat)')
    .option('--concurrency <n>', 'requests in flight at once', '4')
    .option('--limit <n>', 'only the first N input rows')
    .option('--rpm <n>', 'at most N requests started per minute')
    .option('--timeout <seconds>', 'abort a request that takes longer', '120')
    .option('--max-attempts <n>', 'tries per row on 429/5xx/time-outs', '5')
    .option('--styles-file <path>', 'styles file (default VISTYLE_STYLES_FILE)')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the summary as JSON')
    .action(async (flags: MakeFlags) => {
      const registry = openStyleRegistry({ watch: false, ...(flags.stylesFile === undefined ? {} : { file: flags.stylesFile }) });
      const style = registry.get(flags.style);
      registry.close();
      if (!style) throw unknownStyleError(flags.style, registry);
      const timeoutSeconds = Number(flags.timeout);
      if (!Number.isFinite(timeoutSeconds) || timeoutSeconds <= 0) throw new VistyleError('CONFIG_INVALID', '--timeout must be a positive number of seconds');
      const api = resolveDataApiConfig({
        ...(flags.apiBase === undefined ? {} : { apiBase: flags.apiBase }),
        ...(flags.apiModel === undefined ? {} : { apiModel: flags.apiModel }),
        timeoutMs: timeoutSeconds * 1000,
      });
      registerSecret(api.apiKey);
      const controller = new AbortController();
      const onSigint = (): void => {
        process.stderr.write('\nstopping: finishing the rows in flight (Ctrl-C again to quit now)\n');
        controller.abort();
        process.once('SIGINT', () => process.exit(130));
      };
      process.once('SIGINT', onSigint);
      try {
        const limit = positiveInt(flags.limit, '--limit');
        const rpm = positiveInt(flags.rpm, '--rpm');
        const summary = await makeStyledData({
          input: flags.input,
          output: flags.out,
          style,
          api,
          concurrency: positiveInt(flags.concurrency, '--concurrency')!,
          maxAttempts: positiveInt(flags.maxAttempts, '--max-attempts')!,
          ...(limit === undefined ? {} : { limit }),
          ...(rpm === undefined ? {} : { requestsPerMinute: rpm }),
          progress: flags.progress && process.stderr.isTTY ? terminalProgress() : null,
          signal: controller.signal,
        });
        if (flags.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
        else process.stderr.write(formatSummary(summary));
        if (summary.stoppedBecause === 'cancelled') process.exitCode = 130;
        else if (summary.stoppedBecause) throw new VistyleError('NETWORK', summary.stoppedBecause);
        else {
          const nothing = nothingMadeError(summary);
          if (nothing) throw nothing;
        }
      } finally {
        process.removeListener('SIGINT', onSigint);
      }
    });

  data
    .command('check')
    .description('validate a styled dataset (JSON array or JSONL of {question, ans, url}) for the trainer')
    .argument('<file>')
    .option('--json', 'print the counts as JSON')
    .action((file: string, flags: { json?: boolean }) => {
      const { samples } = readStyledDataset(file);
      const urls = new Set(samples.map((s) => s.url));
      const styles = [...new Set(samples.map((s) => s.style).filter(Boolean))];
      const meanAnswer = samples.reduce((sum, s) => sum + [...s.ans].length, 0) / Math.max(1, samples.length);
      const result = { file, samples: samples.length, images: urls.size, styles, meanAnswerChars: Math.round(meanAnswer) };
      process.stdout.write(
        flags.json
          ? `${JSON.stringify(result)}\n`
          : `${file}: ${result.samples} samples, ${result.images} images, mean answer ${result.meanAnswerChars} characters${styles.length ? `, styles ${styles.join(', ')}` : ''}\n`,
      );
    });
}
