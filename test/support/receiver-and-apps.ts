/**
 * The set-up of an end-to-end test file whose tests each start their own apps against one OTLP
 * receiver: the receiver runs for the whole file, and after each test the apps the test started
 * are stopped, then the receiver is cleared (after the stop, so spans the apps flush on shutdown
 * do not leak into the next test).
 */
import { afterAll, afterEach, beforeAll } from 'vitest';
import type { AppProcess } from './app-process';
import { startOtlpReceiver, type OtlpReceiver } from './otlp-receiver';

/** What {@link useReceiverAndApps} gives a test file. */
export interface ReceiverAndApps {
  /**
   * The file's receiver. It starts in beforeAll, so this stands in for it: read it in hooks,
   * tests and the helpers they call, not while the file is being collected.
   */
  readonly receiver: OtlpReceiver;
  /** Push every app a test starts here; it is stopped after the test. */
  readonly apps: AppProcess[];
}

/** Register the file's hooks (call it at the top level of a test file). */
export function useReceiverAndApps(): ReceiverAndApps {
  let started: OtlpReceiver | undefined;
  const apps: AppProcess[] = [];

  beforeAll(async () => {
    started = await startOtlpReceiver();
  });
  afterEach(async () => {
    await Promise.all(apps.splice(0).map((app) => app.stop()));
    started?.clear();
  });
  afterAll(async () => {
    await started?.close();
  });

  const current = (): OtlpReceiver => {
    if (!started) throw new Error('the OTLP receiver is not running: it starts in beforeAll and stops in afterAll');
    return started;
  };
  // Its members are closures over the receiver's state, so forwarding each read is enough.
  const receiver = new Proxy({} as OtlpReceiver, { get: (_target, key) => Reflect.get(current(), key) });
  return { receiver, apps };
}
