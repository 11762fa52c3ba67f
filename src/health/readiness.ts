// The readiness registry behind GET /readyz: every part of vistyle that must work for requests to
// be answered reports into it, and /readyz is ready only when every part is.
//
//   readiness.report('engine', false, 'loading the model');         // push: a state change now
//   readiness.report('engine', true);
//   const off = readiness.register('store', () => storeWritable());  // pull: asked on each /readyz
//   off();                                                           // the part is gone
//
// Push suits parts that know when they change (an adapter that connected or lost its connection, the
// engine while it loads or restarts its worker); pull suits state that is cheap to look at when asked
// (a file is writable, a queue connection answers). A pull check that throws or takes longer than the
// time limit counts as not ready, with the reason; it never fails /readyz itself.
import { redactSecrets } from '../log.js';

export interface CheckResult {
  ready: boolean;
  /** Why it is not ready (or a short note when it is); shown on /readyz, never a secret. */
  detail?: string;
}

export type ReadinessCheck = () => CheckResult | Promise<CheckResult>;

export interface ReadinessReport {
  ready: boolean;
  checks: Record<string, CheckResult>;
}

export const DEFAULT_CHECK_TIMEOUT_MS = 2_000;

export class Readiness {
  private readonly checks = new Map<string, ReadinessCheck>();

  /** Adds (or replaces) a pull check named `name`. Returns a function that removes it. */
  register(name: string, check: ReadinessCheck): () => void {
    this.checks.set(name, check);
    return () => {
      if (this.checks.get(name) === check) this.checks.delete(name);
    };
  }

  /** Sets the state of part `name` (replacing any check of that name) until the next report. */
  report(name: string, ready: boolean, detail?: string): void {
    const state: CheckResult = detail === undefined ? { ready } : { ready, detail };
    this.checks.set(name, () => state);
  }

  /** Forgets part `name`. */
  remove(name: string): void {
    this.checks.delete(name);
  }

  /** The names of the parts reporting, in registration order. */
  names(): string[] {
    return [...this.checks.keys()];
  }

  /** Runs every check (at once, each with the time limit). Ready when every part is (and vacuously when none reports). */
  async evaluate(options: { timeoutMs?: number } = {}): Promise<ReadinessReport> {
    const timeoutMs = options.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS;
    const entries = [...this.checks.entries()];
    const results = await Promise.all(entries.map(([, check]) => runCheck(check, timeoutMs)));
    const checks: Record<string, CheckResult> = {};
    entries.forEach(([name], index) => (checks[name] = results[index]!));
    return { ready: results.every((result) => result.ready), checks };
  }
}

async function runCheck(check: ReadinessCheck, timeoutMs: number): Promise<CheckResult> {
  let timer: NodeJS.Timeout | undefined;
  try {
    const result = await Promise.race([
      Promise.resolve().then(check),
      new Promise<CheckResult>((resolve) => {
        timer = setTimeout(() => resolve({ ready: false, detail: `no answer within ${timeoutMs} ms` }), timeoutMs);
      }),
    ]);
    if (!result || typeof result.ready !== 'boolean') return { ready: false, detail: 'the check gave no answer' };
    return result.detail === undefined ? { ready: result.ready } : { ready: result.ready, detail: redactSecrets(String(result.detail)) };
  } catch (error) {
    return { ready: false, detail: redactSecrets(error instanceof Error ? error.message : String(error)) };
  } finally {
    clearTimeout(timer);
  }
}
