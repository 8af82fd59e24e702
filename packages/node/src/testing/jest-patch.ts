/**
 * jest loads test files and everything they require through its own module registry, never
 * through Node's `require`: the instrumentations' require hooks never see pg, express or
 * node:http there, and a jest test would measure 0 queries. This applies each instrumentation's
 * patches to the modules jest's registry has loaded — the same patch functions, through the
 * same entry point (`_onRequire`) the require hook uses — and removes them when the test file
 * ends (node:http is shared by every test file of a worker).
 */
import { readFileSync } from 'node:fs';
import { isBuiltin } from 'node:module';
import { join, normalize, sep } from 'node:path';
import type { Instrumentation } from '@opentelemetry/instrumentation';
import { moduleDefinitionsOf } from './instrumentation-check';

/** The module registry as a test file's `require` shows it (jest: a view of its registry). */
export interface ModuleRegistry {
  (id: string): unknown;
  resolve(id: string): string;
  readonly cache: Readonly<Record<string, { exports?: unknown; loaded?: boolean } | undefined>>;
}

interface Definition {
  readonly name: string;
  moduleExports?: unknown;
  readonly files?: readonly { readonly name: string; moduleExports?: unknown }[];
}
type Patcher = Instrumentation & {
  _onRequire?(definition: Definition, exports: unknown, name: string, baseDir: string | undefined): unknown;
  isEnabled?(): boolean;
};

/**
 * Patches every module the instrumentations know that the registry has loaded and that they
 * have not patched yet. Built-in modules (node:http) are patched whether loaded or not: the
 * registry hands out Node's own. Returns the names patched.
 */
export function patchLoadedModules(registry: ModuleRegistry, instrumentations: readonly Instrumentation[]): string[] {
  const patched: string[] = [];
  for (const instrumentation of instrumentations as Patcher[]) {
    if (typeof instrumentation._onRequire !== 'function' || instrumentation.isEnabled?.() === false) continue;
    for (const definition of moduleDefinitionsOf(instrumentation) as Definition[]) {
      if (isBuiltin(definition.name)) {
        if (definition.moduleExports === undefined) {
          instrumentation._onRequire(definition, registry(definition.name), definition.name, undefined);
          patched.push(definition.name);
        }
        continue;
      }
      const main = resolve(registry, definition.name);
      if (main === undefined) continue;
      const baseDir = packageDirectory(main, definition.name);
      const loaded = registry.cache[main];
      if (loaded?.exports !== undefined && definition.moduleExports !== loaded.exports) {
        const result = instrumentation._onRequire(definition, loaded.exports, definition.name, baseDir);
        if (result !== loaded.exports)
          throw new Error(
            `request-budget: ${instrumentation.instrumentationName} replaces the exports of ${definition.name}, which cannot be done inside jest's module registry`,
          );
        patched.push(definition.name);
      }
      if (baseDir === undefined) continue;
      for (const file of definition.files ?? []) {
        const relative = normalize(file.name).split(sep).slice(definition.name.split('/').length).join(sep);
        const entry = registry.cache[join(baseDir, relative)];
        if (entry?.exports === undefined || file.moduleExports === entry.exports) continue;
        instrumentation._onRequire(definition, entry.exports, normalize(file.name), baseDir);
        patched.push(file.name);
      }
    }
  }
  return patched;
}

/** Removes every patch the instrumentations applied (their own disable()). */
export function unpatchAll(instrumentations: readonly Instrumentation[]): void {
  for (const instrumentation of instrumentations) {
    try {
      instrumentation.disable();
    } catch {
      // One instrumentation failing to unpatch must not keep the others patched.
    }
  }
}

function resolve(registry: ModuleRegistry, name: string): string | undefined {
  try {
    return registry.resolve(name);
  } catch {
    return undefined;
  }
}

/** `/…/node_modules/pg` for `/…/node_modules/pg/lib/index.js`, checked against its package.json name. */
function packageDirectory(main: string, name: string): string | undefined {
  const marker = `${sep}node_modules${sep}${name.split('/').join(sep)}${sep}`;
  const at = main.lastIndexOf(marker);
  if (at < 0) return undefined;
  const directory = main.slice(0, at + marker.length - 1);
  try {
    const manifest = JSON.parse(readFileSync(join(directory, 'package.json'), 'utf8')) as { name?: unknown };
    return manifest.name === name ? directory : undefined;
  } catch {
    return undefined;
  }
}
