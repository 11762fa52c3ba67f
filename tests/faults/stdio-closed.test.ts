// The bot's log reader goes away (a supervisor or log pipe dies): its parent closes the read ends
// of the bot's stdout and stderr while it serves. Before the fix, every log write then failed with
// EPIPE, each failure was an uncaught exception whose handler logged to stderr again: 100% CPU
// while idle and exit 130 on SIGTERM (issue 14). Now: it answers the next photo, idles, and drains
// to 0 on SIGTERM; with VISTYLE_LOG_FILE the logs go on in the file, otherwise they are counted.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cpuSeconds, metric, metricsPort, PNG, startBotProcess, type BotProcess } from './support/bot-process.js';

/** Sends a photo and waits until the bot's answer is final (its message edited to the end). */
async function askAndWaitForAnswer(bot: BotProcess, userId: number, caption: string): Promise<void> {
  const user = bot.fake.user(userId, { language_code: 'en' });
  const before = bot.fake.callsTo('sendMessage', user.id).length + bot.fake.callsTo('editMessageText', user.id).length;
  await bot.fake.sendPhoto(user, PNG, { caption });
  await bot.fake.waitFor(
    () => bot.fake.callsTo('sendMessage', user.id).length + bot.fake.callsTo('editMessageText', user.id).length > before,
    60_000,
    `an answer to "${caption}"`,
  );
  // the answer is settled once no message of the chat still carries the cancel button
  await bot.fake.waitFor(() => bot.fake.visibleMessagesIn(user.id).every((m) => !m.replyMarkup), 60_000, 'the answer to settle');
}

/** CPU used by the bot's main thread (where the old loop spun) and by the whole process over `ms`. */
async function idleCpu(pid: number, ms: number): Promise<{ main: number; process: number }> {
  const main0 = cpuSeconds(pid, pid);
  const all0 = cpuSeconds(pid);
  await new Promise((resolve) => setTimeout(resolve, ms));
  return { main: (cpuSeconds(pid, pid) - main0) / (ms / 1000), process: (cpuSeconds(pid) - all0) / (ms / 1000) };
}

describe('stdout and stderr closed by the parent while the bot serves', () => {
  it('answers the next photo, idles, counts the lost log lines, and exits 0 on SIGTERM', async () => {
    const bot = await startBotProcess({ env: { VISTYLE_METRICS_PORT: '0' } });
    try {
      await askAndWaitForAnswer(bot, 1001, 'before');
      const port = metricsPort(bot.output());
      expect(await metric(port, 'vistyle_log_lines_dropped_total')).toBe(0);

      bot.closeOutput();
      await askAndWaitForAnswer(bot, 1002, 'after the reader went away');
      // the lines about that answer found no reader: counted, and the output marked as gone
      await bot.fake.waitFor(async () => ((await metric(port, 'vistyle_log_lines_dropped_total')) ?? 0) > 0, 10_000);
      expect(await metric(port, 'vistyle_log_output_ok')).toBe(0);

      // Idle: the main thread below 5% of a core (the old loop took 100%). Idle is not zero: the
      // long poll's answers, timers and GC still run, and on a 2-core CI machine busy with the rest
      // of the suite they took up to 1.2%. The whole process gets more room: running from
      // sources, tsx's module-loader threads poll a little on their own.
      const cpu = await idleCpu(bot.child.pid!, 5_000);
      expect(cpu.main).toBeLessThan(0.05);
      expect(cpu.process).toBeLessThan(0.1);

      bot.child.kill('SIGTERM');
      expect(await bot.exited).toEqual({ code: 0, signal: null });
    } finally {
      await bot.cleanup();
    }
  });

  it('goes on logging to VISTYLE_LOG_FILE, saying why, and exits 0 on SIGTERM', async () => {
    const home = mkdtempSync(join(tmpdir(), 'vistyle-faults-'));
    const logFile = join(home, 'logs', 'vistyle.log');
    const bot = await startBotProcess({ home, env: { VISTYLE_LOG_FILE: logFile } });
    try {
      await askAndWaitForAnswer(bot, 1001, 'before');
      expect(existsSync(logFile)).toBe(false); // only a fallback: stderr works

      bot.closeOutput();
      await askAndWaitForAnswer(bot, 1002, 'after the reader went away');
      await bot.fake.waitFor(() => existsSync(logFile) && readFileSync(logFile, 'utf8').includes('"msg":"request answered"'), 30_000, 'the answer logged in the file');
      const lines = readFileSync(logFile, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as { msg: string; failure?: string });
      expect(lines[0]!.msg).toMatch(/^the log output failed \(EPIPE\); logging to .*vistyle\.log from now on$/);
      expect(lines[0]!.failure).toBe('EPIPE');

      bot.child.kill('SIGTERM');
      expect(await bot.exited).toEqual({ code: 0, signal: null });
      expect(readFileSync(logFile, 'utf8')).toContain('"msg":"stopped"');
    } finally {
      await bot.cleanup();
      rmSync(home, { recursive: true, force: true });
    }
  });
});
