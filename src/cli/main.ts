#!/usr/bin/env node
// The `vistyle` command line. Each command lives in its own module under ./commands and registers
// itself on the program; this file only wires them up and turns failures into one clear line.
import { Command, CommanderError } from 'commander';
import { exitStatusOf, VistyleError } from '../errors.js';
import { redactSecrets } from '../log.js';
import { registerModelCommands } from './commands/model.js';
import { registerAskCommand } from './commands/ask.js';
import { registerTokenizeCommand } from './commands/tokenize.js';
import { registerStylesCommand } from './commands/styles.js';
import { registerDataCommands } from './commands/data.js';
import { registerStartCommand } from './commands/start.js';
import { registerServeCommand } from './commands/serve.js';
import { registerWorkerCommand } from './commands/worker.js';
import { registerDemoCommand } from './commands/demo.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { loadDotEnv } from '../config/dotenv.js';
import { explainConfiguredValues } from '../config/provenance.js';
import { VERSION } from '../version.js';

export function buildProgram(): Command {
  const program = new Command('vistyle')
    .description('Answer questions about pictures in a chosen voice, on your own GPU box.')
    .version(VERSION)
    .option('--verbose', 'print stack traces and debug logs')
    .exitOverride();
  registerModelCommands(program);
  registerAskCommand(program);
  registerTokenizeCommand(program);
  registerStylesCommand(program);
  registerDataCommands(program);
  registerStartCommand(program);
  registerServeCommand(program);
  registerWorkerCommand(program);
  registerDemoCommand(program);
  registerDoctorCommand(program);
  oneLineUsageErrors(program);
  return program;
}

/**
 * Usage mistakes (a missing option, a bad choice, an unknown flag) are errors like any other: one
 * line on stderr that says where the help is, instead of commander's message plus the whole help.
 */
function oneLineUsageErrors(command: Command): void {
  const names: string[] = [];
  for (let c: Command | null = command; c; c = c.parent) names.unshift(c.name());
  const help = `${names.join(' ')} --help`;
  command.showHelpAfterError(false).configureOutput({
    outputError: (message, write) => {
      const line = message.trim().replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
      write(`vistyle: ${redactSecrets(line)} (see \`${help}\`)\n`);
    },
  });
  for (const sub of command.commands) oneLineUsageErrors(sub);
}

/** Runs the CLI and returns the process exit code. */
export async function runCli(argv: string[]): Promise<number> {
  const verbose = argv.includes('--verbose');
  const program = buildProgram();
  try {
    loadDotEnv();
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // help and version exit "successfully" through commander's exitOverride
      return error.exitCode;
    }
    // an error caused by a configured value says where that value came from (.env or environment)
    printError(explainConfiguredValues(error), verbose);
    return exitStatusOf(error);
  }
}

export function printError(error: unknown, verbose: boolean): void {
  const message = error instanceof Error ? error.message : String(error);
  const prefix = error instanceof VistyleError ? '' : 'unexpected error: ';
  process.stderr.write(`vistyle: ${prefix}${redactSecrets(message.split('\n')[0] ?? message)}\n`);
  if (verbose && error instanceof Error && error.stack) {
    process.stderr.write(`${redactSecrets(error.stack)}\n`);
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === (await import('node:url')).pathToFileURL(
  (await import('node:fs')).realpathSync(process.argv[1]),
).href;
if (invokedDirectly) {
  const code = await runCli(process.argv);
  process.exitCode = code;
}
