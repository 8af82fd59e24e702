/** What the alert sink tests share: a breach report to deliver, and a port that refuses. */
import type { BreachReport } from '@request-budget/core';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export const report = (overrides: Partial<BreachReport> = {}): BreachReport => ({
  service: 'svc',
  route: 'GET /users/:id',
  rule: 'GET /users/:id',
  metric: 'db.queries',
  value: 12,
  limit: 10,
  severity: 'warning',
  traceId: 'a'.repeat(32),
  spanId: 'b'.repeat(16),
  timeMs: Date.parse('2026-11-22T03:00:00Z'),
  ...overrides,
});

/** A loopback port nothing listens on: connections to it are refused. */
export async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const probe = http.createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}
