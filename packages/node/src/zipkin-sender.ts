/**
 * A sender for the Zipkin exporter with what its own lacks: a request timeout, and connections
 * from {@link ExporterConnections}. The exporter keeps its transform and batching; only the
 * request that carries a batch is replaced.
 */
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import type { Agent } from 'node:http';

type Send = (zipkinSpans: unknown[], done: (result: ExportResult) => void) => void;

export interface ZipkinSenderOptions {
  readonly url: string;
  readonly timeoutMs: number;
  readonly agentFor: (protocol: string) => Agent;
}

/**
 * Gives `exporter` a sender with a timeout. Returns false, leaving the exporter as it was, when
 * its internals are not the ones this was written for (a newer exporter-zipkin).
 */
export function useTimedZipkinSender(exporter: ZipkinExporter, options: ZipkinSenderOptions): boolean {
  const internals = exporter as unknown as { _send?: Send };
  if (typeof internals._send !== 'function') return false;
  internals._send = timedSend(options);
  return true;
}

function timedSend({ url, timeoutMs, agentFor }: ZipkinSenderOptions): Send {
  const target = new URL(url);
  return (zipkinSpans, done) => {
    if (zipkinSpans.length === 0) return done({ code: ExportResultCode.SUCCESS });
    let settled = false;
    const finish = (result: ExportResult) => {
      if (settled) return;
      settled = true;
      done(result);
    };
    const { request } =
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- after instrumentation-http patched it; exports run with tracing suppressed
      target.protocol === 'https:' ? (require('node:https') as typeof import('node:https')) : (require('node:http') as typeof import('node:http'));
    const req = request(target, { method: 'POST', agent: agentFor(target.protocol), headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        finish(status < 400 ? { code: ExportResultCode.SUCCESS } : { code: ExportResultCode.FAILED, error: new Error(`Zipkin answered HTTP ${status}`) });
      });
      res.on('error', (error) => finish({ code: ExportResultCode.FAILED, error }));
    });
    // Our own timer, unref'd: a pending export must not be what keeps the process alive.
    const timer = setTimeout(() => req.destroy(new Error(`Zipkin did not answer within ${timeoutMs} ms`)), timeoutMs).unref();
    req.on('close', () => clearTimeout(timer));
    req.on('error', (error) => finish({ code: ExportResultCode.FAILED, error }));
    req.end(JSON.stringify(zipkinSpans));
  };
}
