/**
 * Turns on Bluebird's `asyncHooks` option in every copy of Bluebird the app loads, so that its
 * callbacks run in the async context they were registered in.
 *
 * Bluebird calls `.then` callbacks (and map, each, reduce, coroutine steps) from a queue of its
 * own, drained in one go from whichever context first filled it. Without asyncHooks, a query
 * made in such a callback is attributed to whichever request that was, or to none: under
 * concurrency most requests show no queries and one absorbs the others'. Bluebird 3.7 can bind
 * each callback to its context with `Promise.config({ asyncHooks: true })`, which can be called
 * at any time and applies to callbacks registered from then on; it is called here as the
 * library loads, before the app has made a promise with it. Each copy has its own setting:
 * copies made with `getNewLibraryCopy()` (Sequelize made one) and with Bluebird's promise
 * factory module are turned on too. Older Bluebird has no such option: reported once.
 */
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { describeError, reportProblem } from './diagnostics';

const KEPT = Symbol('request-budget.bluebird-async-hooks');

/** A Bluebird promise class (what `require('bluebird')` returns); only the app constructs it. */
interface BluebirdClass {
  new (...args: never[]): unknown;
  config?: (options: { asyncHooks?: boolean }) => unknown;
  getNewLibraryCopy?: () => BluebirdClass;
  [KEPT]?: true;
}

export class BluebirdContextInstrumentation extends InstrumentationBase<InstrumentationConfig> {
  private reportedOld = false;
  private reportedFailure = false;

  constructor(config: InstrumentationConfig = {}) {
    super('@request-budget/bluebird-context', '0.1.0', config);
  }

  protected init() {
    return [
      new InstrumentationNodeModuleDefinition(
        'bluebird',
        ['*'],
        (Bluebird: BluebirdClass, version?: string) => {
          if (isBefore37(version)) this.reportOld(version!);
          else this.keepContext(Bluebird);
          return Bluebird;
        },
        undefined,
        [
          // require('bluebird/js/release/promise')() makes a copy without the package's entry point.
          new InstrumentationNodeModuleFile(
            'bluebird/js/release/promise.js',
            ['>=3.7 <4'],
            (factory: unknown) => this.keepingContext(factory),
            () => {},
          ),
        ],
      ),
    ];
  }

  /** Turns asyncHooks on in one copy, and in the copies it will make. Done once per copy. */
  private keepContext(Bluebird: BluebirdClass | undefined): void {
    try {
      if (typeof Bluebird !== 'function' || typeof Bluebird.config !== 'function' || Bluebird[KEPT] === true) return;
      Object.defineProperty(Bluebird, KEPT, { value: true });
      Bluebird.config({ asyncHooks: true });
      const makeCopy = Bluebird.getNewLibraryCopy;
      if (typeof makeCopy === 'function') Bluebird.getNewLibraryCopy = this.keepingContext(makeCopy) as () => BluebirdClass;
    } catch (error) {
      this.reportFailure(error);
    }
  }

  /** A copy-making function whose copies keep context. */
  private keepingContext(makeCopy: unknown): unknown {
    if (typeof makeCopy !== 'function') return makeCopy;
    const instrumentation = this;
    return function makeCopyKeepingContext(this: unknown, ...args: unknown[]) {
      const copy = (makeCopy as (...a: unknown[]) => BluebirdClass).apply(this, args);
      instrumentation.keepContext(copy);
      return copy;
    };
  }

  private reportOld(version: string): void {
    if (this.reportedOld) return;
    this.reportedOld = true;
    reportProblem(
      `bluebird ${version} runs promise callbacks outside the async context they were registered in, so database calls made in them cannot be attributed to the right request when requests overlap (they go to another request, or to none); upgrade bluebird to 3.7 or later, whose asyncHooks option request-budget turns on (reported once)`,
    );
  }

  private reportFailure(error: unknown): void {
    if (this.reportedFailure) return;
    this.reportedFailure = true;
    reportProblem(
      `could not turn on bluebird's asyncHooks option (${describeError(error)}): database calls made in bluebird callbacks may be attributed to the wrong request; call Promise.config({ asyncHooks: true }) in the app (reported once)`,
    );
  }
}

/** A version older than 3.7 (undefined when it cannot be read: then it is tried). */
function isBefore37(version: string | undefined): boolean {
  const match = /^(\d+)\.(\d+)/.exec(version ?? '');
  if (match === null) return false;
  const [major, minor] = [Number(match[1]), Number(match[2])];
  return major < 3 || (major === 3 && minor < 7);
}
