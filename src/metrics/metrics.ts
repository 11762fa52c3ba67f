// Prometheus metrics of vistyle (prom-client), in their own registry so that several cores (tests)
// never collide in the global one. The HTTP server (src/http) serves them on GET /metrics.
// Every part records into the one BotMetrics instance the process creates: the scheduler (queue
// length, in flight, waits), the bot core (requests, errors, generation times), the HTTP server
// (requests by route and status).
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export class BotMetrics {
  readonly registry: Registry;
  readonly queueLength: Gauge;
  readonly inFlight: Gauge;
  readonly requests: Counter<'platform' | 'outcome'>;
  readonly errors: Counter<'code'>;
  readonly queueWait: Histogram;
  readonly generation: Histogram;
  readonly timeToFirstToken: Histogram;
  readonly tokensPerSecond: Histogram;
  readonly generatedTokens: Counter;
  readonly httpRequests: Counter<'route' | 'status'>;
  /** Picture occurrences the model saw per answered request (a clip's frames each count). */
  readonly requestPictures: Histogram<'platform'>;
  /** Pictures, animations and videos users sent, by kind, and those skipped over the per-message limit. */
  readonly mediaInputs: Counter<'kind'>;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    const registers = [this.registry];
    this.queueLength = new Gauge({ name: 'vistyle_queue_length', help: 'Requests waiting for the engine', registers });
    this.inFlight = new Gauge({ name: 'vistyle_in_flight', help: 'Requests running on the engine', registers });
    this.requests = new Counter({
      name: 'vistyle_requests_total',
      help: 'Requests by platform (telegram, discord, api) and outcome (answered, failed)',
      labelNames: ['platform', 'outcome'],
      registers,
    });
    this.errors = new Counter({ name: 'vistyle_errors_total', help: 'Requests that ended without an answer, by error code', labelNames: ['code'], registers });
    this.queueWait = new Histogram({
      name: 'vistyle_queue_wait_seconds',
      help: 'Time from acceptance to the engine starting the request',
      buckets: [0.01, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.generation = new Histogram({
      name: 'vistyle_generation_seconds',
      help: 'Time the engine spent on a request',
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120],
      registers,
    });
    this.timeToFirstToken = new Histogram({
      name: 'vistyle_time_to_first_token_seconds',
      help: 'Time from the engine starting a request to its first token',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30],
      registers,
    });
    this.tokensPerSecond = new Histogram({
      name: 'vistyle_tokens_per_second',
      help: 'Decoding speed per request (generated tokens after the first, per second)',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500],
      registers,
    });
    this.generatedTokens = new Counter({ name: 'vistyle_generated_tokens_total', help: 'Tokens generated', registers });
    this.httpRequests = new Counter({
      name: 'vistyle_http_requests_total',
      help: 'HTTP requests by route and response status',
      labelNames: ['route', 'status'],
      registers,
    });
    this.requestPictures = new Histogram({
      name: 'vistyle_request_pictures',
      help: 'Pictures the model saw per answered request (history and frames of clips included): the cost of a request',
      labelNames: ['platform'],
      buckets: [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32],
      registers,
    });
    this.mediaInputs = new Counter({
      name: 'vistyle_media_inputs_total',
      help: 'Files users sent with a question, by kind (picture, animation, video, skipped: over VISTYLE_MAX_IMAGES_PER_MESSAGE)',
      labelNames: ['kind'],
      registers,
    });
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix: 'vistyle_process_' });
  }

  /** The text exposition format. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
