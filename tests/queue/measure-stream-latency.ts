// How long a token takes from a worker to its front end, through a real redis-server on this
// machine, for the two ways the queue could carry it:
//   reply stream  — what src/queue uses: XADD to the front end's own stream, blocking XREAD there;
//   BullMQ events — job.updateProgress() on the worker, QueueEvents 'progress' on the front end.
// Each sends N tokens at a steady rate (like a decoder) and reports the added latency per token
// (send call to receipt, both clocks of this process). Not a test: run it by hand on a quiet
// machine (numbers are in docs/deploy.md):
//   npx tsx tests/queue/measure-stream-latency.ts [tokens=2000] [interval-ms=5]
import { performance } from 'node:perf_hooks';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { sendReply, ReplyReader } from '../../src/queue/replies.js';
import { TestRedis } from '../support/redis-server.js';

const TOKENS = Number(process.argv[2] ?? 2000);
const INTERVAL_MS = Number(process.argv[3] ?? 5);

const now = () => performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function summary(name: string, samples: number[]): string {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!.toFixed(3);
  const mean = (sorted.reduce((s, v) => s + v, 0) / sorted.length).toFixed(3);
  return `${name.padEnd(14)} n=${sorted.length}  mean ${mean} ms  p50 ${at(0.5)} ms  p90 ${at(0.9)} ms  p99 ${at(0.99)} ms  max ${sorted.at(-1)!.toFixed(3)} ms`;
}

async function replyStream(port: number): Promise<number[]> {
  const producer = new Redis(port, '127.0.0.1');
  const reader = new Redis(port, '127.0.0.1');
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  const replies = new ReplyReader(reader, 'measure:replies', (event) => {
    if (event.type !== 'delta') return;
    samples.push(now() - sentAt.get(event.text)!);
    if (samples.length === TOKENS) done();
  });
  replies.start();
  await sleep(200);
  for (let i = 0; i < TOKENS; i++) {
    const text = `t${i}`;
    sentAt.set(text, now());
    await sendReply(producer, 'measure:replies', { type: 'delta', jobId: 'job', attempt: 'a', text });
    await sleep(INTERVAL_MS);
  }
  await finished;
  await replies.stop();
  producer.disconnect();
  return samples;
}

async function bullEvents(port: number): Promise<number[]> {
  const connection = { host: '127.0.0.1', port, maxRetriesPerRequest: null };
  const queue = new Queue('measure', { connection });
  const events = new QueueEvents('measure', { connection });
  await events.waitUntilReady();
  const sentAt = new Map<string, number>();
  const samples: number[] = [];
  let done!: () => void;
  const finished = new Promise<void>((resolve) => (done = resolve));
  events.on('progress', ({ data }) => {
    const at = sentAt.get(String(data));
    if (at === undefined) return;
    samples.push(now() - at);
    if (samples.length === TOKENS) done();
  });
  const worker = new Worker(
    'measure',
    async (job) => {
      for (let i = 0; i < TOKENS; i++) {
        const text = `t${i}`;
        sentAt.set(text, now());
        await job.updateProgress(text);
        await sleep(INTERVAL_MS);
      }
    },
    { connection },
  );
  await queue.add('answer', {});
  await finished;
  await worker.close();
  await events.close();
  await queue.close();
  return samples;
}

const server = await TestRedis.start();
try {
  console.log(`${TOKENS} tokens, one every ${INTERVAL_MS} ms, redis-server on 127.0.0.1 (AOF everysec)`);
  console.log(summary('reply stream', await replyStream(server.port)));
  console.log(summary('BullMQ events', await bullEvents(server.port)));
} finally {
  await server.remove();
}
