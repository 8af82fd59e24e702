/**
 * Records, while a test suite runs, what every request (and job, and measured function) cost, per
 * route and per test, and writes it to the run directory for the end-of-run gate. Each test
 * worker writes files of its own; the gate merges them.
 *
 * A request is charged to the test that was running when it started: its server span may end
 * after the test has already moved on.
 */
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { threadId } from 'node:worker_threads';
import type { ReadableSpan } from '@opentelemetry/sdk-trace';
import { MEASUREMENT_ATTRIBUTE } from '@request-budget/core';
import { describeError, reportProblem } from '../diagnostics';
import { observeRoots } from '../measurement-registry';
import { addFigures, figuresOf, type RouteTable } from './baseline';
import { costPartOf, type CostPart } from './cost-part';
import { installRecorder, type Recorder } from './recording';

/** The test running now, as the test runner tells it. */
export interface RunningTest {
  /** The test file (absolute or relative to the working directory). */
  readonly file?: string | undefined;
  /** The test's full name, e.g. `users > lists users with their orders`. */
  readonly name?: string | undefined;
}

/** Test key of whatever ran outside any test (a beforeAll hook, say). */
export const OUTSIDE_A_TEST = '(outside a test)';

/** File name prefix of what the recorders write into the run directory. */
export const OBSERVATIONS_PREFIX = 'observations-';

export interface RecorderOptions {
  /** Directory the gate reads at the end of the run. */
  readonly runDir: string;
  /** Asks the test runner which test is running. */
  readonly runningTest: () => RunningTest | undefined;
}

/** `users.test.ts > lists users`: the file relative to the working directory, `/`-separated. */
export function testKey(test: RunningTest | undefined): string | undefined {
  if (test === undefined || (test.file === undefined && test.name === undefined)) return undefined;
  const file = test.file === undefined ? undefined : relative(process.cwd(), test.file).split(sep).join('/');
  return [file, test.name ?? OUTSIDE_A_TEST].filter((part) => part !== undefined).join(' > ');
}

export class BaselineRecorder implements Recorder {
  private table: RouteTable = {};
  private readonly testAtStart = new WeakMap<object, string | undefined>();
  private written = 0;
  private readonly id = randomUUID().slice(0, 8);
  private stopObserving: (() => void) | undefined;
  private uninstall: (() => void) | undefined;
  private readonly onExit = () => this.flush();

  constructor(private readonly options: RecorderOptions) {}

  /** Starts recording every root of this process. */
  start(): void {
    if (this.stopObserving !== undefined) return;
    this.stopObserving = observeRoots({
      rootStarted: (root) => {
        if (root.attributes[MEASUREMENT_ATTRIBUTE] !== true) this.testAtStart.set(root, this.currentTest());
      },
      rootEnded: (root) => this.rootEnded(root),
    });
    this.uninstall = installRecorder(this);
    process.once('exit', this.onExit);
  }

  /** Writes what is left and stops. */
  stop(): void {
    this.flush();
    this.stopObserving?.();
    this.uninstall?.();
    this.stopObserving = undefined;
    this.uninstall = undefined;
    process.removeListener('exit', this.onExit);
  }

  currentTest(): string | undefined {
    try {
      return testKey(this.options.runningTest());
    } catch {
      return undefined;
    }
  }

  recordPart(part: CostPart, test: string | undefined): void {
    addFigures(this.table, part.route, test ?? this.currentTest() ?? OUTSIDE_A_TEST, figuresOf(part));
  }

  /** Writes what was recorded since the last flush into the run directory (synchronously: it runs at exit too). */
  flush(): void {
    if (Object.keys(this.table).length === 0) return;
    const table = this.table;
    this.table = {};
    try {
      mkdirSync(this.options.runDir, { recursive: true });
      this.written += 1;
      // Unique per recorder: jest runs several test files, each with a recorder, in one process.
      const name = `${OBSERVATIONS_PREFIX}${process.pid}-${threadId}-${this.id}-${this.written}.json`;
      writeFileSync(join(this.options.runDir, name), `${JSON.stringify({ version: 1, table })}\n`);
    } catch (error) {
      reportProblem(`could not write the CI baseline observations to ${this.options.runDir}: ${describeError(error)}`);
    }
  }

  private rootEnded(root: ReadableSpan): void {
    if (root.attributes[MEASUREMENT_ATTRIBUTE] === true) return;
    const test = this.testAtStart.has(root) ? this.testAtStart.get(root) : this.currentTest();
    this.recordPart(costPartOf(root), test);
  }
}
