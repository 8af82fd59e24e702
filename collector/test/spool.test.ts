/**
 * The spool's loading at start, on its own: which files go back into a downstream's queue (within
 * --max-queue-spans per downstream and half of --memory-limit in all), what the log says of the
 * rest — by reason — and the bytes loaded, given back when a batch is delivered or left at shutdown.
 */
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Spool, type SpooledBatch } from '../src/exporter/spool';

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((dir) => rmSync(dir, { recursive: true, force: true })));

const URL = 'http://jaeger:4318/v1/traces';
const batch = (spans: number, bytes: number): SpooledBatch => ({ body: Buffer.alloc(bytes, 7), contentType: 'application/x-protobuf', spans });

function spoolWith(batches: SpooledBatch[]) {
  const dir = mkdtempSync(path.join(tmpdir(), 'request-budget-spool-unit-'));
  dirs.push(dir);
  const lines: string[] = [];
  const spool = new Spool(dir, { log: (line) => lines.push(line), onSpooled: () => {}, onLoaded: () => {} });
  spool.save('otlp', URL, batches);
  lines.length = 0;
  return { dir, spool, lines, files: () => readdirSync(dir).filter((name) => name.endsWith('.batch')).length };
}

describe('the spool at start', () => {
  it('loads within the spans and the bytes allowed, says why each of the rest stayed, and gives the bytes back as batches settle', async () => {
    // In file order: 100 spans of 6,000 bytes (left: bytes), 100 of 1,000 (loaded), 300 of 1,000
    // (left: spans), 50 of 1,000 (loaded).
    const { dir, spool, lines, files } = spoolWith([batch(100, 6000), batch(100, 1000), batch(300, 1000), batch(50, 1000)]);
    const queued: { spans: number; bytes: number; settled: (keepFile: boolean) => void }[] = [];
    spool.load([{ name: 'otlp', url: URL, enqueueSpooled: (b, settled) => queued.push({ spans: b.spans, bytes: b.body.length, settled }) }], 300, 5000);
    expect(queued.map(({ spans, bytes }) => [spans, bytes])).toEqual([
      [100, 1000],
      [50, 1000],
    ]);
    expect(spool.loadedBytes).toBe(2000);
    expect(lines).toEqual([
      `150 span(s) loaded from the spool ${dir} for downstream otlp (2 file(s)); each file is deleted once delivered`,
      `100 span(s) in 1 spool file(s) for otlp left in ${dir}: they do not fit in half of --memory-limit (5000 bytes)`,
      `300 span(s) in 1 spool file(s) for otlp left in ${dir}: they do not fit in --max-queue-spans (300)`,
    ]);
    // Delivered: its file goes. Left unsent at shutdown: its file stays. Either way its bytes are given back.
    queued[0]!.settled(false);
    queued[1]!.settled(true);
    expect(spool.loadedBytes).toBe(0);
    await expect.poll(files).toBe(3);
  });
});
