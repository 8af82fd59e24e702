/**
 * The set-up of a test file that starts collector processes against downstream servers: a
 * collector with short delivery timings (flags override them), downstreams started on a port, and
 * every one of them stopped after each test.
 */
import { afterEach } from 'vitest';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './collector-process';
import { startDownstream, type DownstreamServer } from './downstream-server';

export interface CollectorsAndDownstreams {
  /** A collector forwarding to `otlpUrl`, with the test budgets, a 100 ms grace period and short retry backoffs. */
  collectorFor(otlpUrl: string, options?: Record<string, string>): Promise<CollectorProcess>;
  /** A downstream on `port` (any free one when absent). */
  downstreamOn(port?: number, answer?: Parameters<typeof startDownstream>[1]): Promise<DownstreamServer>;
}

/** Register the file's hook (call it at the top level of a test file). */
export function useCollectorsAndDownstreams(): CollectorsAndDownstreams {
  const collectors: CollectorProcess[] = [];
  const downstreams: DownstreamServer[] = [];
  afterEach(async () => {
    await Promise.all(collectors.splice(0).map((collector) => collector.stop('SIGKILL')));
    await Promise.all(downstreams.splice(0).map((downstream) => downstream.close()));
  });
  return {
    async collectorFor(otlpUrl, options = {}) {
      const flags = {
        '--budgets': COLLECTOR_BUDGETS,
        '--otlp-endpoint': otlpUrl,
        '--grace-period': '100ms',
        '--retry-initial-backoff': '100ms',
        '--retry-max-backoff': '400ms',
        ...options,
      };
      const collector = await startCollectorProcess(Object.entries(flags).flat());
      collectors.push(collector);
      return collector;
    },
    async downstreamOn(port, answer) {
      const downstream = await startDownstream(port, answer);
      downstreams.push(downstream);
      return downstream;
    },
  };
}
