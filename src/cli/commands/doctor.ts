// `vistyle doctor [--no-smoke] [--strict] [--json]`: checks this machine and configuration the
// way `vistyle start` will use them, one line per check with a fix (src/doctor). Exit status 1
// when something is broken (a FAIL line: `vistyle start` cannot work); quick-start steps not taken
// yet (todo: no model pulled, no token) do not fail it, so it can run right after
// `cp deploy/.env.example .env`; --strict fails on those too (for scripts and ExecStartPre).
import type { Command } from 'commander';
import { envFilePath } from '../../config/dotenv.js';
import { existsSync } from 'node:fs';
import { formatResult, formatVerdict, runDoctor } from '../../doctor/run.js';
import { createLogger, redactSecrets, setRootLogger } from '../../log.js';

interface DoctorFlags {
  smoke: boolean;
  strict?: boolean;
  json?: boolean;
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description('check this machine and configuration for `vistyle start`: one line per check, with a fix')
    .option('--no-smoke', 'skip the one-token run on the configured provider (it loads the model)')
    .option('--strict', 'also fail on steps not taken yet (no model pulled, no platform token)')
    .option('--json', 'print the results as JSON')
    .action(async (flags: DoctorFlags) => {
      // the engine's and store's own log lines would interleave with the report
      if (!process.env.VISTYLE_LOG_LEVEL) setRootLogger(createLogger({ level: 'error' }));
      const file = envFilePath();
      const report = await runDoctor({
        envFile: existsSync(file) ? file : null,
        smoke: flags.smoke,
        ...(flags.json ? {} : { onResult: (r) => void process.stdout.write(`${formatResult(r)}\n`) }),
      });
      if (flags.json) process.stdout.write(`${redactSecrets(JSON.stringify(report))}\n`);
      else process.stdout.write(`\n${formatVerdict(report)}\n`);
      if (report.failed > 0 || (flags.strict && report.todo > 0)) process.exitCode = 1;
    });
}
