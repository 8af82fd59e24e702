/**
 * Loud, not silent: a measurement that cannot see queries must fail with the reason and the fix,
 * never pass on 0. Two causes are told apart here: request-budget not running in the realm the
 * test code runs in (jest's module registry, a missing setup file), and a library loaded before
 * the instrumentation that should have patched it.
 */
import { readFileSync } from 'node:fs';
import { join, sep } from 'node:path';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { isAuxiliary } from '../auxiliary-instrumentation';
import { KNOWN_LIBRARIES } from '../known-libraries';
import { modulesLoadedAtStart } from '../measurement-registry';
import { activeInstrumentations } from '../sdk';
import { satisfiesAny } from './version-range';

/** What an instrumentation says of the modules it patches (InstrumentationBase's definitions). */
interface ModuleDefinition {
  readonly name: string;
  readonly supportedVersions?: readonly string[];
  /** Set by the instrumentation when it patched the module's main exports… */
  moduleExports?: unknown;
  /** …or one of its internal files (how pg is patched when imported as an ES module). */
  readonly files?: readonly { moduleExports?: unknown }[];
}
type WithDefinitions = Instrumentation & { getModuleDefinitions?: () => ModuleDefinition[]; _modules?: ModuleDefinition[]; isEnabled?: () => boolean };

/**
 * The module definitions an instrumentation patches with, when it has any (diagnostics-channel
 * ones have none). The live ones (`_modules`), which record the exports they patched:
 * getModuleDefinitions() builds new ones.
 */
export function moduleDefinitionsOf(instrumentation: Instrumentation): ModuleDefinition[] {
  const withDefinitions = instrumentation as WithDefinitions;
  try {
    return withDefinitions._modules ?? withDefinitions.getModuleDefinitions?.() ?? [];
  } catch {
    return [];
  }
}

/** Whether the code runs inside jest (its workers set JEST_WORKER_ID; its sandbox has `jest`). */
export function insideJest(): boolean {
  return process.env.JEST_WORKER_ID !== undefined || typeof (globalThis as { jest?: unknown }).jest === 'object';
}

/** The error for a measurement that found no cost attribution in this realm. */
export function notRunningError(): Error {
  if (insideJest()) {
    const preloaded = /request-budget\/node\/register/.test(process.env.NODE_OPTIONS ?? '');
    return new Error(
      `measureCost: request-budget is not running in this jest test file.${preloaded ? ' NODE_OPTIONS has --require @request-budget/node/register, but jest loads test files and their modules through its own module registry, out of reach of --require.' : ''} ` +
        "Add the preset to the jest configuration: `preset: '@request-budget/node'` (or `setupFilesAfterEnv: ['@request-budget/node/jest']`).",
    );
  }
  return new Error(
    'measureCost: request-budget is not running in this process. Start it before the code under test loads its database driver: ' +
      "in vitest, `setupFiles: ['@request-budget/node/vitest']`; in node:test, `node --test --import @request-budget/node/node-test`; " +
      'otherwise call start() from @request-budget/node in a setup file, or run the tests with --require @request-budget/node/register.',
  );
}

/**
 * The error for a measurement inside jest without the preset's setup: jest's module registry
 * hides every library from the instrumentations, and the cost would read 0.
 */
export function jestSetupMissingError(): Error {
  return new Error(
    'measureCost: inside jest, request-budget needs its jest setup: jest loads modules through its own registry, where the instrumentations never see ' +
      "pg, express or node:http, and every query would count as 0. Use `preset: '@request-budget/node'` in the jest configuration " +
      "(or add '@request-budget/node/jest' to setupFilesAfterEnv) instead of calling start() in a setup file.",
  );
}

/** A library in the module cache that no instrumentation patched. */
export interface Uninstrumented {
  /** The package, e.g. `pg`. */
  readonly module: string;
  /** The instrumentation that should have patched it, e.g. `@opentelemetry/instrumentation-pg`. */
  readonly instrumentation: string;
}

type Require = Pick<NodeJS.Require, 'resolve' | 'cache'>;

/**
 * Database drivers that were in the module cache when cost attribution started, and that their
 * instrumentation has not patched since (a driver required again after start() is patched then,
 * and its prototypes with it). Their queries would count as 0: a pass that is not one.
 */
export function findUninstrumented(
  moduleRequire: Require,
  instrumentations: readonly Instrumentation[] = activeInstrumentations(),
  loadedAtStart: ReadonlySet<string> | undefined = modulesLoadedAtStart(),
): Uninstrumented[] {
  if (loadedAtStart === undefined || loadedAtStart.size === 0) return [];
  const found: Uninstrumented[] = [];
  for (const instrumentation of instrumentations) {
    // An auxiliary one (row bytes) left unpatched costs only what it adds, not the queries.
    if (isAuxiliary(instrumentation) || (instrumentation as WithDefinitions).isEnabled?.() === false) continue;
    for (const definition of moduleDefinitionsOf(instrumentation)) {
      if (!DATA_LIBRARIES.has(definition.name) || patchedSomething(definition)) continue;
      const path = resolveFromProject(moduleRequire, definition.name);
      if (path === undefined || !loadedAtStart.has(path) || !versionSupported(path, definition)) continue;
      if (!found.some((entry) => entry.module === definition.name))
        found.push({ module: definition.name, instrumentation: instrumentation.instrumentationName });
    }
  }
  return found;
}

/** Libraries whose work is queries or commands, patched through their modules (not a channel). */
const DATA_LIBRARIES = new Set(
  KNOWN_LIBRARIES.filter((library) => (library.work === 'queries' || library.work === 'commands') && library.throughChannel !== true)
    .map((library) => library.name)
    .concat(['pg-pool']),
);

function patchedSomething(definition: ModuleDefinition): boolean {
  return definition.moduleExports !== undefined || (definition.files ?? []).some((file) => file.moduleExports !== undefined);
}

/** An unsupported version is never patched, loaded early or not: that is not this check's to say. */
function versionSupported(path: string, definition: ModuleDefinition): boolean {
  const marker = `${sep}node_modules${sep}${definition.name.split('/').join(sep)}${sep}`;
  const at = path.lastIndexOf(marker);
  if (at < 0 || definition.supportedVersions === undefined) return true;
  try {
    const { version } = JSON.parse(readFileSync(join(path.slice(0, at + marker.length), 'package.json'), 'utf8')) as { version?: unknown };
    return typeof version !== 'string' || satisfiesAny(version, definition.supportedVersions);
  } catch {
    return true;
  }
}

const resolved = new Map<string, string | null>();

function resolveFromProject(moduleRequire: Require, name: string): string | undefined {
  const key = `${process.cwd()}\0${name}`;
  let path = resolved.get(key);
  if (path === undefined) {
    try {
      path = moduleRequire.resolve(name, { paths: [process.cwd()] });
    } catch {
      path = null;
    }
    resolved.set(key, path);
  }
  return path ?? undefined;
}

/** What a library is to the user, when its name does not say. */
const ROLES: Record<string, string> = { 'pg-pool': "pg's connection pool", '@redis/client': "node-redis's client" };

/** The error naming each library loaded too early, and the fix. */
export function loadedBeforeError(modules: readonly Uninstrumented[]): Error {
  const names = modules.map((entry) => entry.module);
  const one = names.length === 1;
  const runnerFix = insideJest()
    ? "With jest, use `preset: '@request-budget/node'`: its setup patches libraries already loaded."
    : "Start request-budget before anything loads them: in vitest, `setupFiles: ['@request-budget/node/vitest']` first in the list; in node:test, `--import @request-budget/node/node-test`; otherwise `--require @request-budget/node/register` or start() before the first require.";
  return new Error(
    `measureCost: ${names.map((name) => `'${name}'${ROLES[name] !== undefined ? ` (${ROLES[name]})` : ''}`).join(', ')} ${one ? 'was' : 'were'} loaded before request-budget started and ${one ? 'is' : 'are'} not instrumented ` +
      `(${[...new Set(modules.map((entry) => entry.instrumentation))].join(', ')} never patched ${one ? 'it' : 'them'}), so the queries made with ${one ? 'it' : 'them'} would count as 0 or go to the wrong request. ${runnerFix}`,
  );
}
