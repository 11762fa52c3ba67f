// One front end (`vistyle start` with VISTYLE_QUEUE_URL) and two workers (`vistyle worker`), each
// its own process, on a real Redis (AOF on) and the tiny model, through the fake Telegram Bot API:
// 1. a burst of 60 photos from 20 users, with Redis restarted in the middle: every request ends
//    in exactly one answer or one refusal, answers are the single-process engine's greedy answers,
//    no user ever has more running than VISTYLE_USER_IN_FLIGHT across both workers;
// 2. kill -9 of a worker in the middle of an answer: the answer restarts on the other worker
//    (the user is told) and arrives whole;
// 3. SIGTERM of a worker: its running answers finish, it takes no new job, it exits 0.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { t } from '../../src/bot/i18n.js';
import { createEngine, type WorkerEngine } from '../../src/engine/worker-client.js';
import { OUTAGE_NOTICE_MS } from '../../src/queue/front-end.js';
import { buildStyledRequest } from '../../src/styles/conversation.js';
import { LiveStyleRegistry } from '../../src/styles/registry.js';
import { FakeTelegram, type FakeUser } from '../support/fake-telegram/index.js';
import { skipWithoutRedis, TestRedis } from '../support/redis-server.js';
import { tinyModel } from '../support/tiny-model.js';
import { settledReplies, visibleCore } from '../telegram/harness.js';

/** How long Redis is away in the burst test. */
const REDIS_DOWN_MS = OUTAGE_NOTICE_MS + 1_500;
/**
 * Job locks, short so that a killed worker's job restarts soon. A worker renews its locks every
 * half lock, so they must outlive the Redis outage above by a margin: a lock that expires while
 * Redis is away makes the job look stalled and restart, which this test is not about.
 */
const LOCK_SECONDS = '10';
const REPO = fileURLToPath(new URL('../..', import.meta.url));
const PNG = readFileSync(new URL('../fixtures/images/test_image_64x48.png', import.meta.url));
const QUESTIONS = ['what is this?', 'describe it', 'any colours?'];
/** Short greedy answers for the burst, longer ones to kill a worker in the middle of. */
const STYLES_YAML = `styles:
  plain:
    generation: { temperature: 0, repetitionPenalty: 1, maxNewTokens: 6 }
  long:
    names: Long
    description: long greedy answers
    systemPrompt: Answer.
    generation: { temperature: 0, repetitionPenalty: 1, maxNewTokens: 48 }
`;

interface LogLine {
  time: number;
  msg: string;
  [key: string]: unknown;
}

/** A `vistyle` process with its JSON log lines. */
class VistyleProcess {
  readonly lines: LogLine[] = [];
  readonly raw: string[] = [];
  readonly exited: Promise<number | null>;
  private constructor(
    readonly name: string,
    readonly child: ChildProcess,
  ) {
    let buffer = '';
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8');
      let newline = buffer.indexOf('\n');
      while (newline >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + 1);
        this.raw.push(line);
        try {
          this.lines.push(JSON.parse(line) as LogLine);
        } catch {
          // not a log line
        }
        newline = buffer.indexOf('\n');
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  }

  static spawn(name: string, role: 'start' | 'worker', env: Record<string, string>): VistyleProcess {
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', role], {
      cwd: REPO,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? tmpdir(), VISTYLE_ENV_FILE: '/nonexistent/.env', VISTYLE_LOG_LEVEL: 'info', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    return new VistyleProcess(name, child);
  }

  has(msg: string, since = 0): LogLine | undefined {
    return this.lines.find((line) => line.msg === msg && line.time >= since);
  }

  async waitFor(msg: string, timeoutMs = 120_000, since = 0): Promise<LogLine> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const line = this.has(msg, since);
      if (line) return line;
      if (this.child.exitCode !== null) throw new Error(`${this.name} exited (${this.child.exitCode}) before "${msg}":\n${this.raw.slice(-20).join('\n')}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no "${msg}" in ${timeoutMs} ms:\n${this.raw.slice(-20).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  /** Jobs this worker started and did not finish. */
  unfinished(): LogLine[] {
    const ended = new Set(this.lines.filter((l) => l.msg === 'job finished' || l.msg === 'job failed').map((l) => l.jobId));
    return this.lines.filter((l) => l.msg === 'job started' && !ended.has(l.jobId));
  }

  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null) this.child.kill(signal);
  }
}

describe.skipIf(skipWithoutRedis())('one front end and two workers over Redis', () => {
  let redis: TestRedis;
  let fake: FakeTelegram;
  let home: string;
  let modelDir: string;
  let reference: WorkerEngine;
  let registry: LiveStyleRegistry;
  const processes: VistyleProcess[] = [];
  let frontEnd: VistyleProcess;
  let workerA: VistyleProcess;
  let workerB: VistyleProcess;
  const expected = new Map<string, string>(); // style + question -> the single-process answer

  const workerEnv = (name: string): Record<string, string> => ({
    VISTYLE_QUEUE_URL: redis.url,
    VISTYLE_MODEL_DIR: modelDir,
    VISTYLE_THREADS: '1',
    VISTYLE_WORKER_CONCURRENCY: '2',
    VISTYLE_WORKER_NAME: name,
    VISTYLE_QUEUE_LOCK_SECONDS: LOCK_SECONDS,
    VISTYLE_HOME: join(home, name),
    // Makes an answer last (48 tokens ~ 2 s) so that a worker can be stopped in the middle of one.
    VISTYLE_DEBUG_WORKER_DELTA_DELAY_MS: '40',
  });
  const startWorker = (name: string) => {
    const proc = VistyleProcess.spawn(name, 'worker', workerEnv(name));
    processes.push(proc);
    return proc;
  };

  /** What the single-process engine answers (the bot's exact request: style, question, picture). */
  async function answerOf(styleId: string, question: string): Promise<string> {
    const key = `${styleId}|${question}`;
    const known = expected.get(key);
    if (known !== undefined) return known;
    const styled = buildStyledRequest(registry.get(styleId)!, { question, language: 'en', images: [0] });
    const stream = reference.generate({ images: [new Uint8Array(PNG)], messages: styled.messages, lora: styled.lora, sampling: styled.sampling });
    for await (const _ of stream) {
      // drain
    }
    const text = (await stream.result).text.trim();
    const shown = text ? text : t('en', 'emptyAnswer');
    expected.set(key, shown);
    return shown;
  }

  async function sendPhoto(user: FakeUser, caption: string) {
    return fake.sendPhoto(user, [{ bytes: PNG, width: 64, height: 48 }], { caption });
  }

  beforeAll(async () => {
    redis = await TestRedis.start();
    fake = await FakeTelegram.start();
    home = mkdtempSync(join(tmpdir(), 'vistyle-cluster-'));
    modelDir = (await tinyModel()).modelDir;
    const stylesFile = join(home, 'styles.yaml');
    writeFileSync(stylesFile, STYLES_YAML);
    registry = new LiveStyleRegistry({ file: stylesFile, watch: false });
    reference = await createEngine({ modelDir, threads: 1 });
    frontEnd = VistyleProcess.spawn('front end', 'start', {
      VISTYLE_QUEUE_URL: redis.url,
      TELEGRAM_BOT_TOKEN: fake.token,
      TELEGRAM_API_ROOT: fake.apiRoot,
      VISTYLE_HOME: join(home, 'front'),
      VISTYLE_STYLES_FILE: stylesFile,
      VISTYLE_USER_IN_FLIGHT: '1',
      VISTYLE_USER_PER_MINUTE: '2',
      VISTYLE_QUEUE_LOCK_SECONDS: LOCK_SECONDS,
      VISTYLE_SHUTDOWN_DRAIN_SECONDS: '5',
    });
    processes.push(frontEnd);
    workerA = startWorker('worker-a');
    workerB = startWorker('worker-b');
    await Promise.all([frontEnd.waitFor('vistyle is running'), workerA.waitFor('worker is taking jobs'), workerB.waitFor('worker is taking jobs')]);
    for (const question of QUESTIONS) await answerOf('plain', question);
  }, 300_000);

  afterAll(async () => {
    for (const proc of processes) proc.kill('SIGKILL');
    await Promise.all(processes.map((proc) => Promise.race([proc.exited, new Promise((resolve) => setTimeout(resolve, 5_000))])));
    await reference?.close();
    registry?.close();
    await fake?.close();
    await redis?.remove();
    if (home) rmSync(home, { recursive: true, force: true });
  });

  it('answers or refuses each of a 60-request burst exactly once, across a Redis restart', async () => {
    const users = Array.from({ length: 20 }, (_, i) => fake.user(5000 + i, { language_code: 'en' }));
    const sent: { user: FakeUser; messageId: number; question: string }[] = [];
    let restart: Promise<void> | undefined;
    let restartedAt = 0;
    for (const [index, user] of users.entries()) {
      // Redis goes down once half the burst is in and the first answers are out; the other half
      // arrives while it is away. It stays away clearly longer than the front end waits before it
      // tells users (OUTAGE_NOTICE_MS), so that the notice is due and has time to go out through
      // each chat's edit lane before Redis is back and newer text replaces it.
      if (index === users.length / 2) {
        await fake.waitFor(() => frontEnd.has('request answered'), 60_000, 'the first answer');
        restartedAt = Date.now();
        restart = redis.restart(REDIS_DOWN_MS);
      }
      for (let k = 0; k < 3; k++) {
        const question = QUESTIONS[k]!;
        const message = await sendPhoto(user, question);
        sent.push({ user, messageId: message.message_id, question });
      }
    }
    await restart;

    const refusals = [t('en', 'rateLimitedInFlight'), t('en', 'rateLimitedPerMinute', { seconds: 0 })].map((text) => text.slice(0, 12));
    const byUser = new Map<number, { answered: number; refused: number }>();
    for (const { user, messageId, question } of sent) {
      const replies = await settledReplies(fake, user.id, messageId, 120_000);
      expect(replies, `replies to message ${messageId}`).toHaveLength(1);
      const text = replies[0]!.text;
      const counts = byUser.get(user.id) ?? { answered: 0, refused: 0 };
      if (visibleCore(text) === visibleCore(await answerOf('plain', question))) counts.answered++;
      else {
        expect(refusals.some((prefix) => text.startsWith(prefix)), `"${text}" is neither the answer nor a refusal`).toBe(true);
        counts.refused++;
      }
      byUser.set(user.id, counts);
    }
    for (const counts of byUser.values()) {
      expect(counts.answered + counts.refused).toBe(3);
      expect(counts.answered).toBeLessThanOrEqual(2); // VISTYLE_USER_PER_MINUTE
      expect(counts.refused).toBeGreaterThanOrEqual(1);
    }
    expect([...byUser.values()].reduce((sum, c) => sum + c.answered, 0)).toBeGreaterThanOrEqual(20);

    // both workers served, and no user ever ran two at once, on either worker
    const runs = [workerA, workerB].flatMap((worker) => {
      const finished = new Map(worker.lines.filter((l) => l.msg === 'job finished').map((l) => [l.jobId, l.time]));
      return worker.lines.filter((l) => l.msg === 'job started').map((l) => ({ worker: worker.name, user: String(l.userKey), start: l.time, end: finished.get(l.jobId) ?? Infinity }));
    });
    expect(new Set(runs.map((run) => run.worker)).size).toBe(2);
    const perUser = new Map<string, typeof runs>();
    for (const run of runs) perUser.set(run.user, [...(perUser.get(run.user) ?? []), run]);
    for (const [, list] of perUser) {
      list.sort((a, b) => a.start - b.start);
      for (let i = 1; i < list.length; i++) expect(list[i]!.start).toBeGreaterThanOrEqual(list[i - 1]!.end);
    }
    // the restart was mid-burst: answers went on after it, once everyone had reconnected
    await expect.poll(() => frontEnd.has('reconnected to Redis', restartedAt), { timeout: 15_000 }).toBeDefined();
    expect(frontEnd.lines.filter((l) => l.msg === 'request answered' && l.time > restartedAt + REDIS_DOWN_MS).length).toBeGreaterThan(0);
    // and the users waiting meanwhile were told
    expect(fake.calls.some((call) => JSON.stringify(call.params).includes(t('en', 'queueReconnecting').slice(0, 30)))).toBe(true);
  }, 240_000);

  it('restarts an answer on the other worker when its worker is killed with SIGKILL', async () => {
    const long = await answerOf('long', QUESTIONS[0]!);
    const phaseStart = Date.now();
    const users = Array.from({ length: 4 }, (_, i) => fake.user(6000 + i, { language_code: 'en' }));
    for (const user of users) {
      fake.sendCommand(user, '/style long');
      await fake.waitFor(() => fake.visibleMessagesIn(user.id).some((m) => m.text.includes('Long')), 15_000, 'the style reply');
    }
    const messages = [];
    for (const user of users) messages.push({ user, message: await sendPhoto(user, QUESTIONS[0]!) });
    // wait until worker A is in the middle of an answer
    await fake.waitFor(() => workerA.unfinished().some((l) => l.time >= phaseStart && Date.now() - l.time > 400), 60_000, 'worker A mid-answer');
    const victims = workerA.unfinished().filter((l) => l.time >= phaseStart).map((l) => l.jobId);
    workerA.kill('SIGKILL');
    expect(await workerA.exited).toBeNull();

    for (const { user, message } of messages) {
      const replies = await settledReplies(fake, user.id, message.message_id, 90_000);
      expect(replies).toHaveLength(1);
      expect(visibleCore(replies[0]!.text)).toBe(visibleCore(long));
    }
    // the killed answers ran again on worker B from the start, and their users were told
    const again = workerB.lines.filter((l) => l.msg === 'job started' && victims.includes(l.jobId));
    expect(again.length).toBe(victims.length);
    const notice = t('en', 'answerRestarted');
    const told = fake.calls.some((call) => JSON.stringify(call.params).includes(notice.slice(0, 30)));
    expect(told).toBe(true);
    workerA = startWorker('worker-a2');
    await workerA.waitFor('worker is taking jobs');
  }, 240_000);

  it('lets a worker stopped with SIGTERM finish its running answers and take no new ones', async () => {
    const long = await answerOf('long', QUESTIONS[1]!);
    const phaseStart = Date.now();
    const users = Array.from({ length: 5 }, (_, i) => fake.user(7000 + i, { language_code: 'en' }));
    for (const user of users) {
      fake.sendCommand(user, '/style long');
      await fake.waitFor(() => fake.visibleMessagesIn(user.id).some((m) => m.text.includes('Long')), 15_000, 'the style reply');
    }
    const messages = [];
    for (const user of users) messages.push({ user, message: await sendPhoto(user, QUESTIONS[1]!) });
    await fake.waitFor(() => workerB.unfinished().some((l) => l.time >= phaseStart), 60_000, 'worker B running an answer');
    const running = workerB.unfinished().map((l) => l.jobId);
    workerB.kill('SIGTERM');
    const draining = await workerB.waitFor('draining: finishing running jobs, taking no new ones', 10_000, phaseStart);

    for (const { user, message } of messages) {
      const replies = await settledReplies(fake, user.id, message.message_id, 90_000);
      expect(replies).toHaveLength(1);
      expect(visibleCore(replies[0]!.text)).toBe(visibleCore(long));
    }
    expect(await workerB.exited).toBe(0);
    const finished = workerB.lines.filter((l) => l.msg === 'job finished').map((l) => l.jobId);
    for (const jobId of running) expect(finished).toContain(jobId);
    expect(workerB.lines.filter((l) => l.msg === 'job started' && l.time > draining.time)).toHaveLength(0);
    expect(frontEnd.raw.join('\n')).not.toContain(fake.token);
  }, 240_000);
});
