/**
 * Runs the collector the way users do — `request-budget-collector …` (node collector/dist/cli.js) —
 * in a child process on a free loopback port, and reads its /metrics.
 */
import path from 'node:path';
import { startApp, type AppProcess } from '../../../test/support/app-process';
import { repoRoot } from '../../../test/support/paths';

export const CLI = path.join(repoRoot, 'collector', 'dist', 'cli.js');
export const COLLECTOR_BUDGETS = path.join(repoRoot, 'collector', 'test', 'fixtures', 'budgets.yaml');

export interface CollectorProcess extends AppProcess {
  /** `url + '/v1/traces'`. */
  readonly tracesUrl: string;
  /** `host:port` of its OTLP/gRPC receiver; undefined when --grpc-listen is off. */
  readonly grpcAddress: string | undefined;
  /** The /metrics text, parsed: `name{labels}` → value. */
  metrics(): Promise<Map<string, number>>;
  /** One metric's value (0 when absent). `series` is `name` or `name{a="b",…}` as Prometheus prints it. */
  metric(series: string): Promise<number>;
}

/** Starts the CLI with `args` (plus --listen and --grpc-listen 127.0.0.1:0 unless given: tests run side by side). */
export async function startCollectorProcess(args: string[], env: Record<string, string | undefined> = {}): Promise<CollectorProcess> {
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const grpcListen = args.includes('--grpc-listen') || env.REQUEST_BUDGET_COLLECTOR_GRPC_LISTEN !== undefined ? [] : ['--grpc-listen', '127.0.0.1:0'];
  const app = await startApp({ script: CLI, args: [...listen, ...grpcListen, ...args], requireRegister: false, env, timeoutMs: 20_000 });
  const grpcAddress = app.stdoutLines.map((line) => / and grpc:\/\/(\S+)/.exec(line)?.[1]).find((address) => address !== undefined);
  const metrics = async () => parseMetrics(await (await fetch(`${app.url}/metrics`, { signal: AbortSignal.timeout(5000) })).text());
  return {
    ...app,
    tracesUrl: `${app.url}/v1/traces`,
    grpcAddress,
    metrics,
    metric: async (series) => (await metrics()).get(series) ?? 0,
  };
}

/** Prometheus text → `series` → value (comments dropped). */
export function parseMetrics(text: string): Map<string, number> {
  const values = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const space = line.lastIndexOf(' ');
    values.set(line.slice(0, space), Number(line.slice(space + 1)));
  }
  return values;
}
