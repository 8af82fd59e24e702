/**
 * `node --import @request-budget/node/register app.mjs`: registers the ESM loader hook that lets
 * instrumentations patch ES modules, then starts request-budget as the CommonJS entry does.
 */
import { createRequire, register } from 'node:module';

try {
  register('@opentelemetry/instrumentation/hook.mjs', import.meta.url);
} catch (error) {
  process.stderr.write(
    `request-budget: ES module instrumentation unavailable (${error instanceof Error ? error.message : String(error)}); CommonJS modules are still instrumented\n`,
  );
}
createRequire(import.meta.url)('./register.js');
