/**
 * `npm run bench`: overhead of request-budget against plain OpenTelemetry and against no
 * instrumentation, on the demo app with a real PostgreSQL. Configurations a–f (see
 * configurations.mjs) run interleaved, several rounds, on the 3-query and the 21-query route;
 * load comes from a second process; ratios are taken round by round within this same run.
 *
 * Env: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test), BENCH_CONFIGS (a subset,
 * e.g. a,e,d; default all), BENCH_ROUNDS (3; the figures used 5), BENCH_SECONDS per
 * measurement (8), BENCH_WARMUP_SECONDS (2), BENCH_CONNECTIONS (8).
 * Writes bench/results/latest.{json,md,png}.
 */
import { configurations } from './configurations.mjs';
import os from 'node:os';
import { ROUTES, benchSettings, runEnvironment, runInterleaved, seedDatabase, selectConfigurations, startOtlpSink } from './harness.mjs';
import { writeReport } from './report.mjs';

const log = (message) => process.stdout.write(`${message}\n`);

async function main() {
  const settings = benchSettings({ rounds: 3, seconds: 8 });
  await seedDatabase(settings.databaseUrl);
  const sink = await startOtlpSink();
  const configs = selectConfigurations(configurations(sink), process.env.BENCH_CONFIGS);
  const names = Object.keys(configs);
  const started = Date.now();
  log(
    `bench: ${settings.rounds} rounds × ${names.length} configurations (${names.join(', ')}) × 2 routes, ${settings.seconds} s each (+${settings.warmupSeconds} s warm-up), ${settings.connections} connections, ${os.cpus().length} cores`,
  );
  const { samples, otlpBytesPerRequest } = await runInterleaved({ configs, settings, sink, log });
  await sink.close();
  const files = await writeReport({
    samples,
    otlpBytesPerRequest,
    labels: Object.fromEntries(names.map((name) => [name, configs[name].label])),
    env: runEnvironment(settings, started, { configs: names }),
  });
  log(`\nwrote ${files.join(', ')}`);
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
