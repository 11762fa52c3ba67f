// What the core hands an adapter: finished, translated texts (status lines, the Cancel label),
// answers without control characters and never blank, whether a failure was a refusal before the
// queue, and a ticket that says when the request was accepted. Real core (scheduler, SQLite store,
// styles) over the test engine.
import { messageText } from '../../src/engine/prompt.js';
import { afterEach, describe, expect, it } from 'vitest';
import { isBlankAnswer, stripControlChars } from '../../src/bot/control-chars.js';
import { errorMessage, t } from '../../src/bot/i18n.js';
import type { AnswerSink, FailureContext, StatusText } from '../../src/bot/types.js';
import type { ErrorCode } from '../../src/errors.js';
import { FakeEngine } from './support/fake-engine.js';
import { coreConfig, makeHarness, photoRequest, user, type Harness } from './support/harness.js';

let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

type Call =
  | { method: 'queued'; position: number; status: StatusText }
  | { method: 'started'; status: StatusText }
  | { method: 'progress'; text: string }
  | { method: 'finished'; text: string }
  | { method: 'failed'; text: string; code: ErrorCode; context: FailureContext };

class TextSink implements AnswerSink {
  readonly calls: Call[] = [];
  queued(position: number, status: StatusText) {
    this.calls.push({ method: 'queued', position, status });
  }
  started(status: StatusText) {
    this.calls.push({ method: 'started', status });
  }
  progress(text: string) {
    this.calls.push({ method: 'progress', text });
  }
  async finished(text: string) {
    this.calls.push({ method: 'finished', text });
    return { messageIds: ['m'] };
  }
  failed(text: string, code: ErrorCode, context: FailureContext) {
    this.calls.push({ method: 'failed', text, code, context });
  }
}

describe('stripControlChars', () => {
  it('removes C0, DEL and C1 control characters, keeps newline and tab, and turns CR into a line break', () => {
    expect(stripControlChars('a\u0000b\u0007c\u001bd\u007fe\u0085f\u009fg')).toBe('abcdefg');
    expect(stripControlChars('line one\r\nline two\rline three\n\tindented')).toBe('line one\nline two\nline three\n\tindented');
    // not control characters: emoji joiners, CJK, a zero-width space
    expect(stripControlChars('👩‍👩‍👧 图片\u200b')).toBe('👩‍👩‍👧 图片\u200b');
    expect(isBlankAnswer('\u0000\u0001 \n\t\u009f')).toBe(true);
    expect(isBlankAnswer('\u0000a')).toBe(false);
  });
});

describe('what the core hands the adapter', () => {
  it('status lines and the Cancel label in the user’s language', async () => {
    const engine = new FakeEngine();
    engine.hold = true;
    harness = makeHarness(engine);
    const first = harness.core.ask(photoRequest('1', 'one'), new TextSink());
    await engine.waitForGenerations(1);
    const sink = new TextSink();
    const zh = photoRequest('2', '二', { user: user('2', { languageCode: 'zh-CN' }) });
    const ticket = harness.core.ask(zh, sink);
    expect(ticket.language).toBe('zh');
    expect(await ticket.accepted).toBe(true);
    engine.generations[0]!.release();
    await first.done;
    await engine.waitForGenerations(2);
    engine.generations[1]!.release();
    await ticket.done;
    const queued = sink.calls.find((c) => c.method === 'queued');
    expect(queued).toEqual({ method: 'queued', position: 1, status: { text: t('zh', 'queued', { position: 1 }), cancelLabel: t('zh', 'cancelButton') } });
    expect(sink.calls.find((c) => c.method === 'started')).toEqual({
      method: 'started',
      status: { text: t('zh', 'thinking'), cancelLabel: t('zh', 'cancelButton') },
    });
  });

  it('answers without control characters, and a polite text instead of a blank answer, stored as shown', async () => {
    const engine = new FakeEngine();
    engine.answerFor = (request) => (messageText(request.messages.at(-1)!) === 'blank' ? '\u0000\u0001\n \u0007' : 'A\u0000 cat\u0007 on a\r\nsofa.\u009b');
    harness = makeHarness(engine);
    const sink = new TextSink();
    const outcome = await harness.core.ask(photoRequest('1', 'what?', { messageId: 'p1' }), sink).done;
    expect(outcome).toMatchObject({ status: 'answered', text: 'A cat on a\nsofa.' });
    expect(sink.calls.filter((c) => c.method === 'finished')).toEqual([{ method: 'finished', text: 'A cat on a\nsofa.' }]);
    for (const call of sink.calls) if (call.method === 'progress') expect(call.text).toBe(stripControlChars(call.text));
    expect(harness.store.findByMessage('telegram', '1', 'm')?.turns[0]?.answer).toBe('A cat on a\nsofa.');

    const blankSink = new TextSink();
    const blank = await harness.core.ask(photoRequest('2', 'blank'), blankSink).done;
    expect(blank).toMatchObject({ status: 'answered', text: t('en', 'emptyAnswer') });
    expect(blankSink.calls.filter((c) => c.method === 'finished')).toEqual([{ method: 'finished', text: t('en', 'emptyAnswer') }]);
    expect(blankSink.calls.filter((c) => c.method === 'progress')).toEqual([]);
  });

  it('says whether a failure was a refusal before the queue, and the ticket whether the request was accepted', async () => {
    const engine = new FakeEngine();
    harness = makeHarness(engine, { config: coreConfig({ limits: { maxImageBytes: 1000 } }) });
    const refusedSink = new TextSink();
    const tooBig = photoRequest('1', 'big?');
    tooBig.images![0]!.sizeBytes = 5000;
    const refused = harness.core.ask(tooBig, refusedSink);
    expect(await refused.accepted).toBe(false);
    await refused.done;
    expect(refusedSink.calls).toEqual([
      { method: 'failed', code: 'IMAGE_TOO_LARGE', text: errorMessage('en', 'IMAGE_TOO_LARGE', { limit: '1000 B' }), context: { refused: true } },
    ]);

    // Accepted, then the picture turns out not to be one: a failure after the queue.
    const lateSink = new TextSink();
    const notAPicture = photoRequest('2', 'what?');
    notAPicture.images = [{
      sizeBytes: 10,
      mime: 'application/octet-stream',
      fetch: async () => {
        await new Promise((resolve) => setTimeout(resolve, 50)); // a download takes a moment
        return new TextEncoder().encode('plain text');
      },
    }];
    const late = harness.core.ask(notAPicture, lateSink);
    expect(await late.accepted).toBe(true);
    await late.done;
    const failed = lateSink.calls.find((c) => c.method === 'failed');
    expect(failed).toMatchObject({ code: 'IMAGE_UNSUPPORTED', context: { refused: false } });
  });
});
