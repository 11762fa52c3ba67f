// Shutdown's drain, shared by the in-process scheduler and the Redis one: running requests get
// `drainMs` to finish; then they are aborted and given a moment to return.
const ABORTED_GRACE_MS = 5_000;

/**
 * Waits up to `drainMs` for `runs`. If they have not all returned by then, calls `abort` and waits
 * at most ABORTED_GRACE_MS more: a run that ignores its signal is not waited for forever.
 */
export async function drainRuns(runs: readonly Promise<unknown>[], drainMs: number, abort: () => void): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const drained = await Promise.race([
    Promise.all(runs).then(() => true),
    new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(false), drainMs);
    }),
  ]);
  clearTimeout(timer);
  if (drained) return;
  abort();
  await Promise.race([Promise.all(runs), new Promise((resolve) => setTimeout(resolve, ABORTED_GRACE_MS).unref())]);
}
