'use strict';
/**
 * A stand-in for jest where jest is not installed: runs a jest configuration's test files the
 * way jest does what matters to instrumentation, so request-budget's jest preset can be tested.
 *
 * - Each test file runs in a vm context of its own, with its own globals (OpenTelemetry's global
 *   registry lives there, out of reach of a --require'd SDK), like jest-environment-node.
 * - Modules are loaded by this runtime's own registry, never through Node's `require`: the
 *   instrumentations' require hooks do not see them, exactly as under jest's module registry.
 *   `require('module')` gives a subclass of Module, and `require.cache` a view of the registry,
 *   as jest-runtime does; Node's built-in modules are shared by every test file.
 * - The preset's setupFiles, setupFilesAfterEnv, globalSetup and globalTeardown run where jest
 *   runs them (globalSetup/teardown in this process, outside any sandbox), and every test file
 *   runs in this one process in turn (like `jest --runInBand`).
 * - The test globals are a small subset of jest's: describe, test/it, beforeAll, afterAll,
 *   beforeEach, afterEach, expect (toBe, toEqual, toMatchObject, toHaveLength, extend, getState).
 *
 * Usage: node jest-like-runtime.cjs <jest.config.js>. Prints one line per test, then exits 1
 * when a test or the global teardown failed.
 */
const fs = require('node:fs');
const Module = require('node:module');
const path = require('node:path');
const vm = require('node:vm');

const GLOBALS = [
  'process', 'console', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'setImmediate', 'clearImmediate',
  'queueMicrotask', 'Buffer', 'URL', 'URLSearchParams', 'TextEncoder', 'TextDecoder', 'AbortController', 'AbortSignal',
  'fetch', 'Request', 'Response', 'Headers', 'FormData', 'Blob', 'structuredClone', 'performance', 'EventTarget', 'Event',
  'WebAssembly', 'crypto', 'BroadcastChannel', 'MessageChannel', 'MessagePort', 'DOMException', 'ReadableStream', 'WritableStream', 'TransformStream',
];

function main() {
  const configPath = path.resolve(process.argv[2]);
  const config = require(configPath);
  const rootDir = config.rootDir ?? path.dirname(configPath);
  const presetPath = config.preset ? require.resolve(`${config.preset}/jest-preset`, { paths: [rootDir] }) : undefined;
  const preset = presetPath ? require(presetPath) : {};
  const resolveRoot = (file) => path.resolve(rootDir, file.replace('<rootDir>', rootDir));
  const setupFiles = [...(preset.setupFiles ?? []), ...(config.setupFiles ?? [])].map(resolveRoot);
  const setupFilesAfterEnv = [...(preset.setupFilesAfterEnv ?? []), ...(config.setupFilesAfterEnv ?? [])].map(resolveRoot);
  const globalSetup = config.globalSetup ?? preset.globalSetup;
  const globalTeardown = config.globalTeardown ?? preset.globalTeardown;
  const testFiles = fs.readdirSync(rootDir).filter((name) => name.endsWith('.spec.js')).sort().map((name) => path.join(rootDir, name));
  const only = process.env.JEST_LIKE_FILTER;

  process.env.JEST_WORKER_ID = '1';
  return (async () => {
    if (globalSetup) await require(resolveRoot(globalSetup))();
    let failed = false;
    for (const file of testFiles) {
      if (only && !path.basename(file).includes(only)) continue;
      const results = await runTestFile(file, { setupFiles, setupFilesAfterEnv, rootDir });
      for (const result of results) {
        process.stdout.write(`${result.status === 'passed' ? 'PASS' : 'FAIL'} ${path.relative(rootDir, file)} > ${result.name}${result.error ? `\n${result.error}` : ''}\n`);
        if (result.status !== 'passed') failed = true;
      }
    }
    if (globalTeardown) {
      try {
        await require(resolveRoot(globalTeardown))();
      } catch (error) {
        process.stderr.write(`globalTeardown failed: ${error.message}\n`);
        failed = true;
      }
    }
    return failed ? 1 : 0;
  })();
}

/** A vm context with the globals jest-environment-node gives a test file. */
function createSandbox() {
  const sandbox = {};
  for (const name of GLOBALS) if (name in globalThis) sandbox[name] = globalThis[name];
  const context = vm.createContext(sandbox);
  sandbox.global = vm.runInContext('globalThis', context);
  return { context, global: sandbox.global };
}

/** The module registry of one test file: loads CommonJS modules into its context, bypassing Node's require. */
function createRegistry(context) {
  const registry = new Map();
  // jest-runtime's `module` for test code: a subclass, so patching its prototype changes nothing outside.
  class SandboxModule extends Module {}
  Object.assign(SandboxModule, Module);
  const cache = new Proxy(Object.create(null), {
    get: (_target, key) => (typeof key === 'string' ? registry.get(key) : undefined),
    has: (_target, key) => typeof key === 'string' && registry.has(key),
    ownKeys: () => [...registry.keys()],
    getOwnPropertyDescriptor: () => ({ configurable: true, enumerable: true }),
    set: () => true,
    deleteProperty: () => true,
  });

  function resolveFrom(from, request, options) {
    if (Module.isBuiltin(request)) return request;
    if (options?.paths) return require.resolve(request, { paths: options.paths });
    const parent = { id: from, filename: from, paths: Module._nodeModulePaths(path.dirname(from)) };
    return Module._resolveFilename(request, parent, false);
  }

  function makeRequire(from) {
    const sandboxRequire = (request) => load(from, request);
    sandboxRequire.resolve = (request, options) => resolveFrom(from, request, options);
    sandboxRequire.resolve.paths = (request) => Module._resolveLookupPaths(request, { id: from, filename: from, paths: Module._nodeModulePaths(path.dirname(from)) });
    sandboxRequire.cache = cache;
    sandboxRequire.extensions = Object.create(null);
    sandboxRequire.main = undefined;
    return sandboxRequire;
  }

  function load(from, request) {
    if (request === 'module' || request === 'node:module') return SandboxModule;
    if (Module.isBuiltin(request)) return require(request);
    const filename = resolveFrom(from, request);
    const cached = registry.get(filename);
    if (cached) return cached.exports;
    const module = { id: filename, filename, exports: {}, loaded: false, children: [], paths: Module._nodeModulePaths(path.dirname(filename)), path: path.dirname(filename) };
    module.require = makeRequire(filename);
    registry.set(filename, module);
    try {
      if (filename.endsWith('.json')) {
        module.exports = JSON.parse(fs.readFileSync(filename, 'utf8'));
      } else if (filename.endsWith('.mjs')) {
        // Node's resolver picks `module-sync` ES modules (async-function) where jest's picks the
        // CommonJS `default`: such leaf utilities come from Node's own loader here.
        module.exports = require(filename);
      } else {
        const code = fs.readFileSync(filename, 'utf8').replace(/^#!.*/, '');
        const fn = vm.compileFunction(code, ['exports', 'require', 'module', '__filename', '__dirname'], {
          filename,
          parsingContext: context,
          importModuleDynamically: vm.constants?.USE_MAIN_CONTEXT_DEFAULT_LOADER,
        });
        fn.call(module.exports, module.exports, module.require, module, filename, path.dirname(filename));
      }
      module.loaded = true;
      return module.exports;
    } catch (error) {
      registry.delete(filename);
      throw error;
    }
  }

  return { load, makeRequire };
}

/** Structural equality as jest's toEqual sees it: own enumerable keys, prototypes and realms ignored. */
function equals(a, b) {
  if (Object.is(a, b)) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const keysA = Object.keys(a).filter((key) => a[key] !== undefined);
  const keysB = Object.keys(b).filter((key) => b[key] !== undefined);
  return keysA.length === keysB.length && keysA.every((key) => equals(a[key], b[key]));
}

function matchesObject(received, expected) {
  if (typeof expected !== 'object' || expected === null) return Object.is(received, expected);
  if (typeof received !== 'object' || received === null) return false;
  if (Array.isArray(expected)) return Array.isArray(received) && received.length === expected.length && expected.every((item, i) => matchesObject(received[i], item));
  return Object.keys(expected).every((key) => matchesObject(received[key], expected[key]));
}

function createExpect(state) {
  const custom = {};
  const show = (value) => JSON.stringify(value);
  function expect(received) {
    const assert = (pass, message) => {
      if (!pass) throw new Error(message());
    };
    const matchers = {
      toBe: (expected) => assert(Object.is(received, expected), () => `expected ${show(received)} to be ${show(expected)}`),
      toEqual: (expected) => assert(equals(received, expected), () => `expected ${show(received)} to equal ${show(expected)}`),
      toMatchObject: (expected) => assert(matchesObject(received, expected), () => `expected ${show(received)} to match ${show(expected)}`),
      toHaveLength: (length) => assert(received?.length === length, () => `expected length ${length}, got ${received?.length}`),
    };
    for (const [name, matcher] of Object.entries(custom)) {
      matchers[name] = (...args) => {
        const result = matcher.call({ isNot: false }, received, ...args);
        assert(result.pass, result.message);
      };
    }
    return matchers;
  }
  expect.extend = (matchers) => Object.assign(custom, matchers);
  expect.getState = () => ({ ...state });
  return expect;
}

async function runTestFile(testPath, { setupFiles, setupFilesAfterEnv, rootDir }) {
  const { context, global } = createSandbox();
  const { load } = createRegistry(context);
  const state = { testPath, currentTestName: undefined };
  const hooks = { beforeAll: [], afterAll: [], beforeEach: [], afterEach: [] };
  const tests = [];
  const describing = [];
  Object.assign(global, {
    expect: createExpect(state),
    jest: {},
    describe: (name, body) => {
      describing.push(name);
      try {
        body();
      } finally {
        describing.pop();
      }
    },
    test: (name, fn) => tests.push({ name: [...describing, name].join(' '), fn }),
    beforeAll: (fn) => hooks.beforeAll.push(fn),
    afterAll: (fn) => hooks.afterAll.push(fn),
    beforeEach: (fn) => hooks.beforeEach.push(fn),
    afterEach: (fn) => hooks.afterEach.push(fn),
  });
  global.it = global.test;
  const results = [];
  const fail = (name, error) => results.push({ name, status: 'failed', error: error?.stack ?? String(error) });
  try {
    const from = path.join(rootDir, 'jest-like-root.js');
    for (const file of setupFiles) load(from, file);
    for (const file of setupFilesAfterEnv) load(from, file);
    load(from, testPath);
    for (const hook of hooks.beforeAll) await hook();
    for (const test of tests) {
      state.currentTestName = test.name;
      try {
        for (const hook of hooks.beforeEach) await hook();
        await test.fn();
        for (const hook of hooks.afterEach) await hook();
        results.push({ name: test.name, status: 'passed' });
      } catch (error) {
        fail(test.name, error);
      }
    }
    state.currentTestName = undefined;
  } catch (error) {
    fail('(test file)', error);
  } finally {
    for (const hook of hooks.afterAll) {
      try {
        await hook();
      } catch (error) {
        fail('(afterAll)', error);
      }
    }
  }
  return results;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (error) => {
    process.stderr.write(`${error.stack}\n`);
    process.exitCode = 2;
  },
);
