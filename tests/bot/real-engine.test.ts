// The bot pipeline against the real worker-backed engine on a tiny random checkpoint: answers
// stream from the model, a follow-up carries the earlier turn, and a worker crash mid-answer is
// reported to the user while the next request is served by the restarted worker.
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Engine, GenerateRequest } from '../../src/engine/types.js';
import { errorMessage } from '../../src/bot/i18n.js';
import { createEngine, type WorkerEngine } from '../../src/engine/engine.js';
import { messageText } from '../../src/engine/prompt.js';
import { tinyModel } from '../support/tiny-model.js';
import { makeHarness, photoRequest, privateChat, RecordingSink, user, type Harness } from './support/harness.js';
import { crashingWorker } from '../support/crash-hook.js';

let engine: WorkerEngine;
let harness: Harness;
/** What the core asked the real engine, recorded on the way through. */
const asked: GenerateRequest[] = [];

beforeAll(async () => {
  const { modelDir } = await tinyModel();
  engine = await createEngine({ modelDir, threads: 1, ...crashingWorker(3), restartDelayMs: 50, logger: pino({ level: 'silent' }) });
  const recording: Engine = {
    get info() {
      return engine.info;
    },
    generate: (request, options) => {
      asked.push(request);
      return engine.generate(request, options);
    },
    close: () => engine.close(),
  };
  harness = makeHarness(recording);
}, 180_000);

afterAll(async () => {
  await harness?.close();
  await engine?.close();
});

describe('bot core with the real engine (tiny checkpoint)', () => {
  it('reports a worker crash mid-answer, then answers the next request from the restarted worker', async () => {
    const crashedSink = new RecordingSink();
    const crashed = await harness.core.ask(photoRequest('1', 'what is it?'), crashedSink).done;
    expect(crashed).toMatchObject({ status: 'failed', code: 'ENGINE_CRASHED', text: errorMessage('en', 'ENGINE_CRASHED') });
    expect(crashedSink.terminal).toHaveLength(1);

    const sink = new RecordingSink(['a-1']);
    const answered = await harness.core.ask(photoRequest('1', 'what is it?', { messageId: 'p-1' }), sink).done;
    expect(answered.status).toBe('answered');
    expect(answered.text.length).toBeGreaterThan(0);
    expect(engine.starts).toBe(2);
    expect(sink.terminal).toEqual([{ type: 'finished', text: answered.text }]);
  });

  it('answers a follow-up by reply with the earlier turn in the prompt', async () => {
    const sink = new RecordingSink();
    const followUp = await harness.core.ask({ user: user('1'), chat: privateChat('1'), question: 'and then?', replyToMessageId: 'a-1' }, sink).done;
    expect(followUp.status).toBe('answered');
    const stored = harness.store.latest('telegram', '1')!;
    expect(stored.turns.map((turn) => turn.question)).toEqual(['what is it?', 'and then?']);
    const prompt = asked[asked.length - 1]!.messages.filter((m) => m.role !== 'system');
    expect(prompt.slice(-3).map((m) => [m.role, messageText(m)])).toEqual([
      ['user', 'what is it?'],
      ['assistant', stored.turns[0]!.answer],
      ['user', 'and then?'],
    ]);
    expect(sink.terminal).toHaveLength(1);
  });
});
