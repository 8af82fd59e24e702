/**
 * Never silently wrong about libraries: when a known data or HTTP library is in the process but
 * its work cannot be counted, one line on stderr says which library, why, and the fix. Causes:
 *
 * - it was loaded before request-budget started (found in the module cache at start): the
 *   instrumentations hook `require`/`import`, and it was not seen;
 * - its version is outside what its instrumentation supports (read from the instrumentation's
 *   own module definitions);
 * - its instrumentation is turned off (OTEL_NODE_DISABLED_INSTRUMENTATIONS,
 *   OTEL_NODE_ENABLED_INSTRUMENTATIONS or start({ instrumentations }));
 * - nothing request-budget installs instruments it (better-sqlite3, tedious, …).
 *
 * Loads after start are seen by an instrumentation that only observes: it declares every known
 * library with any version, so it goes through the same require-in-the-middle and
 * import-in-the-middle hooks as the real instrumentations (ES modules included, under --import).
 * Each problem is told once per library.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  type Instrumentation,
  type InstrumentationConfig,
  type InstrumentationModuleDefinition,
} from '@opentelemetry/instrumentation';
import { isAuxiliary } from './auxiliary-instrumentation';
import { describeError, reportProblem } from './diagnostics';
import { INSTRUMENTATION_NAMES } from './instrumentations';
import { KNOWN_LIBRARIES, type KnownLibrary, type LibraryWork } from './known-libraries';
import { jestSetupRan } from './testing/measure-hooks';
import { satisfiesAny } from './testing/version-range';

export interface LibraryCoverageOptions {
  /** Every instrumentation installed: request-budget's and the app's own. */
  readonly instrumentations: readonly Instrumentation[];
  /** The app's own (start({ extraInstrumentations })): one may stand in for one of ours turned off. */
  readonly extraInstrumentations?: readonly Instrumentation[];
  /** request-budget's instrumentations in force, by name (config.instrumentations). */
  readonly enabledNames: readonly string[];
  /** Every name there is. @default INSTRUMENTATION_NAMES */
  readonly allNames?: readonly string[];
  /** Where the names in force came from, so the fix names the right knob. */
  readonly enabledFrom: 'option' | 'environment';
  /** The option, when `enabledFrom` is 'option'. @default 'start({ instrumentations })' */
  readonly optionLabel?: string;
  /** @default process.env */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** @default the module cache (`require.cache`) */
  readonly moduleCache?: Readonly<Record<string, unknown>>;
  /** @default reportProblem */
  readonly report?: (message: string) => void;
  /** @default KNOWN_LIBRARIES */
  readonly libraries?: readonly KnownLibrary[];
}

/** A library's support as its instrumentations' module definitions declare it. */
interface Coverage {
  readonly instrumentations: string[];
  readonly ranges: string[];
}

type Verdict = 'ok' | 'loaded-before' | 'unsupported' | 'turned-off' | 'uncounted';

const LOST: Record<LibraryWork, string> = {
  queries: 'its queries are not counted',
  commands: 'its commands are not counted',
  routes: 'its route templates (http.route) are not recorded',
  calls: 'its HTTP calls are not counted',
  jobs: 'its jobs get no cost record',
};

// Lines already written, process-wide: a second watcher (a second setup) repeats none of them.
const told = new Set<string>();

/**
 * Checks the libraries already loaded, then watches those loaded from now on. Never throws: a
 * failure is reported once and checking stops.
 */
export function watchLibraryCoverage(options: LibraryCoverageOptions): LibraryCoverage {
  return new LibraryCoverage(options);
}

export class LibraryCoverage {
  private readonly report: (message: string) => void;
  private readonly env: Readonly<Record<string, string | undefined>>;
  private readonly libraries = new Map<string, KnownLibrary>();
  private readonly coverage = new Map<string, Coverage>();
  /** Names some app-supplied instrumentation declares. */
  private readonly coveredByApp = new Set<string>();
  private readonly turnedOff: Set<string>;
  /** Versions seen per library (at start or when loaded), to judge packages that wrap others. */
  private readonly seen = new Map<string, string | undefined>();
  private failed = false;

  constructor(private readonly options: LibraryCoverageOptions) {
    this.report = options.report ?? reportProblem;
    this.env = options.env ?? process.env;
    this.turnedOff = new Set((options.allNames ?? INSTRUMENTATION_NAMES).filter((name) => !options.enabledNames.includes(name)));
    this.guard(() => {
      for (const library of options.libraries ?? KNOWN_LIBRARIES) this.libraries.set(library.name, library);
      for (const instrumentation of options.instrumentations) this.addCoverage(instrumentation, false);
      for (const instrumentation of options.extraInstrumentations ?? []) this.addCoverage(instrumentation, true);
      this.checkLoaded(options.moduleCache ?? require.cache);
      // Registers its require/import hooks as it is constructed (enabled by default).
      new LibraryLoadObserver({
        names: [...this.libraries.keys()],
        onLoad: (name, version) => this.guard(() => this.onLoad(name, version)),
      });
    });
  }

  private addCoverage(instrumentation: Instrumentation, fromApp: boolean): void {
    // Row bytes and the like: the library's own instrumentation says whether it is counted.
    if (isAuxiliary(instrumentation)) return;
    for (const definition of moduleDefinitionsOf(instrumentation)) {
      if (!this.libraries.has(definition.name)) continue;
      if (fromApp) this.coveredByApp.add(definition.name);
      const entry = this.coverage.get(definition.name) ?? { instrumentations: [], ranges: [] };
      if (!entry.instrumentations.includes(instrumentation.instrumentationName)) entry.instrumentations.push(instrumentation.instrumentationName);
      for (const range of definition.supportedVersions) if (!entry.ranges.includes(range)) entry.ranges.push(range);
      this.coverage.set(definition.name, entry);
    }
  }

  /** Known libraries already in the module cache: loaded before the instrumentations were. */
  private checkLoaded(cache: Readonly<Record<string, unknown>>): void {
    const loaded = new Map<string, string | undefined>();
    for (const file of Object.keys(cache)) {
      const found = packageOf(file);
      if (found === undefined || loaded.has(found.name) || !this.libraries.has(found.name)) continue;
      loaded.set(found.name, readVersion(found.directory));
    }
    for (const [name, version] of loaded) this.seen.set(name, version);
    for (const [name, version] of loaded) this.judge(this.libraries.get(name)!, version, true);
  }

  private onLoad(name: string, version: string | undefined): void {
    const library = this.libraries.get(name);
    if (library === undefined) return;
    this.seen.set(name, version);
    this.judge(library, version, false);
  }

  private judge(library: KnownLibrary, version: string | undefined, loadedBeforeStart: boolean): void {
    const verdict = this.verdictOf(library, version, loadedBeforeStart);
    if (verdict === 'ok') return;
    const key = verdict === 'turned-off' ? `${verdict}:${library.instrumentation}` : `${verdict}:${library.family ?? library.name}`;
    if (told.has(key)) return;
    told.add(key);
    this.report(this.messageFor(verdict, library, version));
  }

  private verdictOf(library: KnownLibrary, version: string | undefined, loadedBeforeStart: boolean): Verdict {
    if (library.instrumentation !== undefined && this.turnedOff.has(library.instrumentation) && !this.coveredByApp.has(library.name)) return 'turned-off';
    const supported = this.supports(library, version);
    if (supported === undefined) return 'uncounted';
    if (!supported) return 'unsupported';
    // Inside jest, its setup patches what jest's registry loaded before it (testing/jest-patch.ts).
    return loadedBeforeStart && library.throughChannel !== true && !jestSetupRan() ? 'loaded-before' : 'ok';
  }

  /** Whether the version is covered; undefined when nothing instruments the library at all. */
  private supports(library: KnownLibrary, version: string | undefined): boolean | undefined {
    const coverage = this.coverage.get(library.name);
    if (coverage !== undefined && (version === undefined || satisfiesAny(version, coverage.ranges))) return true;
    if (library.wraps !== undefined && this.seen.has(library.wraps)) {
      const wrapped = this.libraries.get(library.wraps);
      if (wrapped !== undefined && this.supports(wrapped, this.seen.get(library.wraps)) === true) return true;
    }
    if (coverage !== undefined) return false;
    // Channel-based instrumentations declare no module definitions: enabled is covered.
    return library.instrumentation !== undefined && library.throughChannel === true ? true : undefined;
  }

  private messageFor(verdict: Exclude<Verdict, 'ok'>, library: KnownLibrary, version: string | undefined): string {
    const { name } = library;
    const label = version === undefined ? name : `${name} ${version}`;
    const lost = LOST[library.work];
    switch (verdict) {
      case 'loaded-before':
        return `${label} was loaded before request-budget started, so ${lost}; fix: start the app with \`node --require @request-budget/node/register\` (ES modules: \`--import\`), or call start() before requiring ${name}`;
      case 'unsupported': {
        const coverage = this.coverage.get(name)!;
        return `${label} is not supported by ${coverage.instrumentations.join(', ')} (${name} ${coverage.ranges.join(' || ')}), so ${lost}; fix: use a supported version of ${name}`;
      }
      case 'turned-off':
        return `${label} is loaded, but ${this.turnedOffBy(library.instrumentation!)}, so ${lost}; fix: ${this.turnOnFix(library.instrumentation!)}`;
      case 'uncounted':
        return `${label} is loaded, but request-budget does not count ${library.work} made with ${name} (no instrumentation for it); fix: pass an OpenTelemetry instrumentation for ${name} in start({ extraInstrumentations }), or use a library request-budget instruments`;
    }
  }

  private turnedOffBy(instrumentation: string): string {
    if (this.options.enabledFrom === 'option') return `${this.optionLabel} leaves out its instrumentation "${instrumentation}"`;
    if (listed(this.env.OTEL_NODE_DISABLED_INSTRUMENTATIONS, instrumentation))
      return `OTEL_NODE_DISABLED_INSTRUMENTATIONS turns off its instrumentation "${instrumentation}"`;
    return `OTEL_NODE_ENABLED_INSTRUMENTATIONS leaves out its instrumentation "${instrumentation}"`;
  }

  private turnOnFix(instrumentation: string): string {
    if (this.options.enabledFrom === 'option') return `add '${instrumentation}' to ${this.optionLabel}`;
    if (listed(this.env.OTEL_NODE_DISABLED_INSTRUMENTATIONS, instrumentation)) return `remove ${instrumentation} from OTEL_NODE_DISABLED_INSTRUMENTATIONS`;
    return `add ${instrumentation} to OTEL_NODE_ENABLED_INSTRUMENTATIONS`;
  }

  private get optionLabel(): string {
    return this.options.optionLabel ?? 'start({ instrumentations })';
  }

  private guard(fn: () => void): void {
    if (this.failed) return;
    try {
      fn();
    } catch (error) {
      this.failed = true;
      reportProblem(`library coverage check failed and stopped (reported once): ${describeError(error)}`);
    }
  }
}

interface ObserverConfig extends InstrumentationConfig {
  readonly names: readonly string[];
  readonly onLoad: (name: string, version: string | undefined) => void;
}

/**
 * Patches nothing: declares each library with every version, so the require and import hooks
 * call it with the version of every copy loaded. (Read from the config: init() runs inside the
 * base constructor, before this class's fields exist.)
 */
class LibraryLoadObserver extends InstrumentationBase<ObserverConfig> {
  constructor(config: ObserverConfig) {
    super('@request-budget/library-coverage', '0.1.0', config);
  }

  protected init() {
    const { names, onLoad } = this.getConfig();
    return names.map((name) => {
      const definition: InstrumentationModuleDefinition = new InstrumentationNodeModuleDefinition(name, ['*'], (exports: unknown, version?: string) => {
        onLoad(name, version);
        return exports;
      });
      definition.includePrerelease = true;
      return definition;
    });
  }
}

/** An instrumentation's module definitions; none for those that hook diagnostics channels. */
function moduleDefinitionsOf(instrumentation: Instrumentation): readonly InstrumentationModuleDefinition[] {
  const withDefinitions = instrumentation as Instrumentation & { getModuleDefinitions?: () => InstrumentationModuleDefinition[] };
  try {
    return withDefinitions.getModuleDefinitions?.() ?? [];
  } catch {
    return [];
  }
}

/** The package a cached file belongs to: the last `node_modules/<name>` (or `@scope/name`) in its path. */
function packageOf(file: string): { name: string; directory: string } | undefined {
  const path = file.replace(/\\/g, '/');
  const at = path.lastIndexOf('/node_modules/');
  if (at < 0) return undefined;
  const rest = path.slice(at + '/node_modules/'.length).split('/');
  const name = rest[0]?.startsWith('@') ? `${rest[0]}/${rest[1] ?? ''}` : rest[0];
  if (name === undefined || name === '' || name.endsWith('/')) return undefined;
  return { name, directory: join(file.slice(0, at + '/node_modules/'.length), name) };
}

function readVersion(directory: string): string | undefined {
  try {
    const { version } = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { version?: unknown };
    return typeof version === 'string' ? version : undefined;
  } catch {
    return undefined;
  }
}

/** Whether a comma-separated instrumentation list names `name` (as config.ts reads it). */
function listed(list: string | undefined, name: string): boolean {
  return (list ?? '').split(',').some((entry) => entry.trim().toLowerCase() === name);
}
