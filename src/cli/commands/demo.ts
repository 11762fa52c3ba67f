// `vistyle demo [--image FILE] [--provider P] [--json] ["question"]`: a first answer with no
// download. Builds the demo model (src/demo/demo-model.ts: tiny, random weights) into
// <VISTYLE_HOME>/demo once, then answers like `vistyle ask` on it, on the configured execution
// provider (CPU unless VISTYLE_PROVIDER or --provider says otherwise). It says plainly, on stderr,
// that the answer is noise: it checks the pipeline on this machine before the 1.8 GB pull.
import type { Command } from 'commander';
import { DEMO_NOTICE, REAL_MODEL_HINT, ensureDemoModel, ensureDemoPicture } from '../../demo/demo-model.js';
import { runAsk, type AskOptions } from './ask.js';

interface DemoFlags {
  image?: string;
  provider?: string;
  threads?: string;
  maxTokens: string;
  json?: boolean;
}

export const DEMO_QUESTION = 'What is in this picture?';

export async function runDemo(question: string | undefined, flags: DemoFlags, verbose: boolean): Promise<void> {
  const say = (line: string): void => void process.stderr.write(`vistyle demo: ${line}\n`);
  say(DEMO_NOTICE);
  const { dir } = await ensureDemoModel(say);
  const image = flags.image ?? (await ensureDemoPicture());
  const options: AskOptions = {
    model: dir,
    image: [image],
    maxTokens: flags.maxTokens,
    // a fixed seed: the same noise each time, so two runs can be compared
    seed: '1',
    ...(flags.provider === undefined ? {} : { provider: flags.provider }),
    ...(flags.threads === undefined ? {} : { threads: flags.threads }),
    ...(flags.json ? { json: true } : {}),
  };
  await runAsk(question ?? DEMO_QUESTION, options, verbose);
  if (process.exitCode === undefined || process.exitCode === 0) {
    say(`the pipeline works (the answer above is noise from random weights); ${REAL_MODEL_HINT}`);
  }
}

export function registerDemoCommand(program: Command): void {
  program
    .command('demo')
    .description('a first answer with no download, from a tiny random demo model (its answers are noise): checks the pipeline')
    .argument('[question]', 'the question', DEMO_QUESTION)
    .option('--image <file>', 'your own picture (default: a generated one)')
    .option('--provider <cpu|cuda>', 'execution provider (default: VISTYLE_PROVIDER, then cpu)')
    .option('--threads <n>', 'onnxruntime intra-op threads (0 = onnxruntime default)')
    .option('--max-tokens <n>', 'most tokens to generate', '24')
    .option('--json', 'print a JSON summary on the last line')
    .action(async (question: string, flags: DemoFlags, command: Command) => {
      await runDemo(question, flags, command.optsWithGlobals().verbose === true);
    });
}
