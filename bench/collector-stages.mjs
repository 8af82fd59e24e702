/**
 * Where the collector's CPU time per span goes, stage by stage, in one process on one core (no
 * HTTP, no timers): decode a request, take its spans into the trace window (the possible roots
 * held, the others' records read and the spans handed on), derive and judge each trace (what is
 * written spliced into the roots' bytes), encode batches for a downstream, and what the garbage
 * collector takes meanwhile. The same traffic as `npm run bench:collector` (collector-payloads.mjs).
 *
 *   npm run bench:collector-stages          (COLLECTOR_STAGES_SECONDS, default 6; or COLLECTOR_STAGES_SPANS)
 *
 * Writes bench/results/collector-stages.json; a figure is CPU µs per span (process.cpuUsage around
 * each stage), the total beside the end-to-end bench's figure for comparison.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { BudgetRuleSet, loadBudgetFile } from '@request-budget/core';
import { freshCopy, generatePayloads } from './collector-payloads.mjs';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = (file) => import(path.join(ROOT, 'collector/dist', file));
const { decodeTraceRequest } = await dist('receiver/otlp-decode.js');
const { TraceProcessor } = await dist('processor/trace-processor.js');
const { TraceBuffer } = await dist('processor/trace-buffer.js');
const { encodeTraceRequest } = await dist('exporter/otlp-encode.js');

const SECONDS = Number(process.env.COLLECTOR_STAGES_SECONDS ?? 6);
// Fixed work instead (for paired runs timed from outside, e.g. farm-bench --vs): this many spans
// measured after 100 rounds of warm-up.
const FIXED_SPANS = Number(process.env.COLLECTOR_STAGES_SPANS ?? 0);
const BATCH_SPANS = 512; // the collector's default --max-batch-spans
const processor = new TraceProcessor({ rules: new BudgetRuleSet(loadBudgetFile(path.join(ROOT, 'examples/demo/budgets.yaml'))) });
const { payloads } = await generatePayloads({ pool: 200, tracesPerRequest: 14 });

let gcMs = 0;
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) gcMs += entry.duration;
}).observe({ entryTypes: ['gc'] });

const cpu = () => {
  const { user, system } = process.cpuUsage();
  return user + system;
};
const stages = { decode: 0, hold: 0, process: 0, encode: 0 };
let spansDone = 0;
let sequence = 0;
let pending = [];

/** One round: decode `count` requests, hold by trace, process each trace, encode in batches. */
function round(count) {
  const bodies = [];
  for (let index = 0; index < count; index += 1) bodies.push(freshCopy(payloads[(sequence += 1) % payloads.length], sequence));
  let started = cpu();
  const decoded = bodies.map((body) => decodeTraceRequest(body, 'protobuf').spans);
  stages.decode += cpu() - started;

  // The collector's own trace window, every trace flushed at the end of the round (no timers).
  started = cpu();
  const traces = [];
  const window = new TraceBuffer({
    graceMs: 3_600_000,
    maxWaitMs: 3_600_000,
    maxTraces: 1_000_000,
    maxSpansPerTrace: 1_000_000,
    copiesPerSpan: 1,
    onFlush: (spans, reason, forwarded) => traces.push([spans, forwarded]),
    onForward: (spans) => {
      for (const span of spans) pending.push(span);
    },
    onError: (error) => {
      throw error;
    },
  });
  for (const spans of decoded) window.add(spans);
  window.flushAll();
  stages.hold += cpu() - started;

  started = cpu();
  for (const [spans, forwarded] of traces) {
    processor.process(spans, forwarded);
    for (const span of spans) pending.push(span);
  }
  stages.process += cpu() - started;

  started = cpu();
  let spans = 0;
  while (pending.length >= BATCH_SPANS) {
    const batch = pending.splice(0, BATCH_SPANS);
    encodeTraceRequest(batch);
    // As a downstream does once it has encoded a batch (absent before held-spans.ts).
    for (const span of batch) span.bytesCopied?.();
    spans += BATCH_SPANS;
  }
  stages.encode += cpu() - started;
  return spans;
}

// Warm-up, then measured.
const warmUntil = performance.now() + 2000;
if (FIXED_SPANS > 0) for (let warm = 0; warm < 100; warm += 1) round(20);
else while (performance.now() < warmUntil) round(20);
for (const key of Object.keys(stages)) stages[key] = 0;
pending = [];
gcMs = 0;
const startedCpu = cpu();
const until = performance.now() + SECONDS * 1000;
while (FIXED_SPANS > 0 ? spansDone < FIXED_SPANS : performance.now() < until) spansDone += round(20);
const totalCpu = cpu() - startedCpu;
// Let the last GC entries arrive.
await new Promise((resolve) => setTimeout(resolve, 50));

const perSpan = (micros) => Math.round((micros / spansDone) * 1000) / 1000;
const result = {
  spans: spansDone,
  cpuMicrosPerSpan: perSpan(totalCpu),
  stages: Object.fromEntries(Object.entries(stages).map(([key, micros]) => [key, perSpan(micros)])),
  gcMicrosPerSpan: perSpan(gcMs * 1000),
  spansPerCpuSecond: Math.round(spansDone / (totalCpu / 1e6)),
  env: { node: process.version, seconds: SECONDS, batchSpans: BATCH_SPANS, date: new Date().toISOString() },
};
const lines = [
  `collector stages, CPU µs per span over ${spansDone.toLocaleString('en-US')} spans (${SECONDS} s, Node ${process.version}):`,
  ...Object.entries(result.stages).map(([key, value]) => `  ${key.padEnd(8)} ${value.toFixed(3)}`),
  `  total    ${result.cpuMicrosPerSpan.toFixed(3)} (GC within: ${result.gcMicrosPerSpan.toFixed(3)}) → ${result.spansPerCpuSecond.toLocaleString('en-US')} spans per CPU second`,
];
process.stdout.write(`${lines.join('\n')}\n`);
writeFileSync(path.join(ROOT, 'bench/results/collector-stages.json'), `${JSON.stringify(result, null, 2)}\n`);
