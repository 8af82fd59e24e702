/**
 * `npm run bench:floor`: what each instrumentation costs when nothing is sampled. Runs (a) no
 * instrumentation, then plain OpenTelemetry with the sampler always off, first the SDK with no
 * instrumentation and then its instrumentations added one at a time (http; http+pg;
 * http+pg+express), then request-budget with the sampler always off, all interleaved per round
 * like `npm run bench`; reports CPU µs per request per step, what each step adds to the one
 * before, and the ratio to (a) — to name what is behind configuration (f)'s cost against (a).
 *
 * Env: as run-bench.mjs (DATABASE_URL, BENCH_WARMUP_SECONDS, BENCH_CONNECTIONS), but BENCH_ROUNDS
 * defaults to 4 and BENCH_SECONDS to 3 (about 5 minutes on 2 cores: more, shorter rounds pair the
 * steps more closely in time on a noisy machine than a few long ones); BENCH_CONFIGS picks a
 * subset of the steps (e.g. a,http+pg). Writes bench/results/floor.{json,md}.
 */
import { floorConfigurations } from './configurations.mjs';
import { writeFloorReport } from './floor-report.mjs';
import os from 'node:os';
import { ROUTES, benchSettings, runEnvironment, runInterleaved, seedDatabase, selectConfigurations, startOtlpSink } from './harness.mjs';

const log = (message) => process.stdout.write(`${message}\n`);

async function main() {
  const settings = benchSettings({ rounds: 4, seconds: 3 });
  await seedDatabase(settings.databaseUrl);
  const sink = await startOtlpSink();
  const configs = selectConfigurations(floorConfigurations(sink), process.env.BENCH_CONFIGS);
  const names = Object.keys(configs);
  const started = Date.now();
  log(
    `bench:floor: ${settings.rounds} rounds × ${names.length} steps (${names.join(', ')}) × 2 routes, ${settings.seconds} s each (+${settings.warmupSeconds} s warm-up), ${settings.connections} connections, ${os.cpus().length} cores`,
  );
  const { samples, otlpBytesPerRequest } = await runInterleaved({ configs, settings, sink, log });
  await sink.close();
  const files = writeFloorReport({
    samples,
    otlpBytesPerRequest,
    steps: Object.fromEntries(
      names.map((name) => [name, { label: configs[name].label, instrumentations: configs[name].instrumentations, plain: configs[name].plain === true }]),
    ),
    env: runEnvironment(settings, started),
  });
  log(`\nwrote ${files.join(', ')}`);
}

main().catch((error) => {
  process.stderr.write(`bench:floor failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
