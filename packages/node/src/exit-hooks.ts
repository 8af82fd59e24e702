/**
 * What request-budget does when the process is asked to stop, without changing how the app
 * stops:
 * - SIGTERM/SIGINT with an app handler: the app owns the shutdown (it may drain for a while),
 *   so only a bounded flush runs now; the SDK keeps exporting what the drain produces.
 * - SIGTERM/SIGINT with no app handler: Node would exit at once. Ours disabled that, so after a
 *   bounded shutdown ours is removed and the signal raised again: the process ends as it would
 *   have (a second signal meanwhile ends it at once).
 * - beforeExit (the event loop ran dry): one bounded shutdown. It makes the loop busy again, so
 *   the app's own beforeExit listeners run once more afterwards.
 * Our signal listener is prepended so it sees the app's listeners, `once` ones included, before
 * they remove themselves.
 */

export interface ExitActions {
  flush(): Promise<void>;
  shutdown(): Promise<void>;
}

const SIGNALS = ['SIGTERM', 'SIGINT'] as const;

/** Installs the hooks; returns a function that removes them. */
export function installExitHooks(actions: ExitActions, timeoutMs: number): () => void {
  const bounded = (work: Promise<void>) => Promise.race([work.catch(() => {}), new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref())]);

  const onBeforeExit = () => {
    process.removeListener('beforeExit', onBeforeExit);
    void bounded(actions.shutdown());
  };
  const onSignal = (signal: NodeJS.Signals) => {
    const appHandlesSignal = process.listeners(signal).some((listener) => listener !== onSignal);
    if (appHandlesSignal) {
      void bounded(actions.flush());
      return;
    }
    process.removeListener(signal, onSignal);
    void bounded(actions.shutdown()).finally(() => process.kill(process.pid, signal));
  };

  process.on('beforeExit', onBeforeExit);
  for (const signal of SIGNALS) process.prependListener(signal, onSignal);
  return () => {
    process.removeListener('beforeExit', onBeforeExit);
    for (const signal of SIGNALS) process.removeListener(signal, onSignal);
  };
}
