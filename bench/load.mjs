/**
 * The load generator, run as its own process so its CPU is not the app's: autocannon against
 * one URL for a fixed time, printing its result as one JSON line.
 *   node bench/load.mjs URL SECONDS CONNECTIONS
 */
import autocannon from 'autocannon';

const [url, seconds, connections] = process.argv.slice(2);
const result = await autocannon({ url, duration: Number(seconds), connections: Number(connections), timeout: 10 });
process.stdout.write(
  `${JSON.stringify({
    requests: result.requests.total,
    durationS: result.duration,
    throughput: result.requests.total / result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts + result.non2xx,
  })}\n`,
);
