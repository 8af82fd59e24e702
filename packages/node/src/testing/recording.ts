/**
 * The CI baseline recorder of this process, when a runner setup installed one: measureCost hands
 * it the measured code's own part, and asks it which test is running.
 */
import type { CostPart } from './cost-part';

/** What measureCost needs of the recorder. */
export interface Recorder {
  /** The running test's key (`file > test name`), or undefined outside a test. */
  currentTest(): string | undefined;
  /** Records one part under its route and the given test. */
  recordPart(part: CostPart, test: string | undefined): void;
}

let active: Recorder | undefined;

/** The installed recorder, if any. */
export function currentRecorder(): Recorder | undefined {
  return active;
}

/** Installs `recorder` for this process; returns the function that removes it. */
export function installRecorder(recorder: Recorder): () => void {
  active = recorder;
  return () => {
    if (active === recorder) active = undefined;
  };
}
