/**
 * Turns `npm run bench:floor`'s samples into bench/results/floor.json and floor.md: per route and
 * step, the median CPU µs per request, the CPU and throughput ratios to (a) and the CPU the step
 * adds to the step before it — each taken round by round (median, min, max) — and the plain
 * OpenTelemetry step that adds the most.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, perRoundDifferences, perRoundRatios, spread } from './paired-ratios.mjs';

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** `plainSteps`: the plain OpenTelemetry steps, among which the largest step is named. */
export function summariseFloor(samples, plainSteps) {
  const names = Object.keys(samples);
  const routes = Object.keys(samples[names[0]] ?? {});
  const perRoute = {};
  const largestPlainStep = {};
  for (const route of routes) {
    perRoute[route] = {};
    names.forEach((name, i) => {
      const list = samples[name][route];
      const previous = i > 0 ? names[i - 1] : undefined;
      const base = samples.a?.[route];
      perRoute[route][name] = {
        throughput: Math.round(median(list.map((s) => s.throughput))),
        cpuMicrosPerRequest: Math.round(median(list.map((s) => s.cpuMicrosPerRequest))),
        ...(base && name !== 'a'
          ? {
              cpuMicrosOverA: spread(perRoundDifferences(list, base, 'cpuMicrosPerRequest'), 0),
              cpu_over_a: spread(perRoundRatios(list, base, 'cpuMicrosPerRequest')),
              throughput_over_a: spread(perRoundRatios(list, base, 'throughput')),
            }
          : {}),
        ...(previous ? { previous, cpuMicrosAddedOverPrevious: spread(perRoundDifferences(list, samples[previous][route], 'cpuMicrosPerRequest'), 0) } : {}),
      };
    });
    const [step, added] = Object.entries(perRoute[route])
      .filter(([name, s]) => plainSteps.includes(name) && s.cpuMicrosAddedOverPrevious)
      .reduce(
        (best, [name, s]) => (best === undefined || s.cpuMicrosAddedOverPrevious.median > best[1] ? [name, s.cpuMicrosAddedOverPrevious.median] : best),
        undefined,
      ) ?? [undefined, undefined];
    if (step !== undefined) largestPlainStep[route] = { step, cpuMicrosAdded: added };
  }
  return { perRoute, largestPlainStep };
}

export function writeFloorReport({ samples, otlpBytesPerRequest, steps, env }) {
  const summary = summariseFloor(
    samples,
    Object.keys(steps).filter((name) => steps[name].plain),
  );
  mkdirSync(RESULTS_DIR, { recursive: true });
  const files = [join(RESULTS_DIR, 'floor.json'), join(RESULTS_DIR, 'floor.md')];
  const otlp = Object.fromEntries(Object.entries(otlpBytesPerRequest).map(([name, perRound]) => [name, Math.round(median(perRound))]));
  const md = markdown(summary, steps, otlp, env);
  writeFileSync(
    files[0],
    `${JSON.stringify({ perRoute: summary.perRoute, largestPlainStep: summary.largestPlainStep, otlpBytesPerRequest: otlp, steps, env, samples }, null, 2)}\n`,
  );
  writeFileSync(files[1], md);
  process.stdout.write(`\n${md}`);
  return files;
}

function markdown(summary, steps, otlp, env) {
  const range = (s, digits = 3) => (s ? `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})` : '—');
  const lines = [
    '# Floor: instrumentations patched, nothing sampled',
    '',
    `${env.date} · Node ${env.node} · ${env.cpus} cores (${env.cpuModel}) · ${env.rounds} rounds × ${env.seconds} s per step and route, ${env.connections} connections, steps interleaved per round · ${env.wallSeconds} s wall`,
    '',
    'Each step adds to the one before it; every plain OpenTelemetry step runs with OTEL_TRACES_SAMPLER=parentbased_always_off and batch OTLP export (nothing to export).',
    'Ratios and differences are taken round by round: median (min–max over rounds).',
    '',
    '| step | instrumentations | OTLP bytes/req |',
    '|---|---|---:|',
    ...Object.entries(steps).map(([name, s]) => `| (${name}) ${s.label} | ${s.instrumentations} | ${otlp[name] ?? '—'} |`),
  ];
  for (const [route, byStep] of Object.entries(summary.perRoute)) {
    lines.push(
      '',
      `## ${route} ${env.routes[route]}`,
      '',
      '| step | req/s | CPU µs/req | CPU µs/req over (a) | CPU µs/req added by this step | CPU / (a) | throughput / (a) |',
      '|---|---:|---:|---:|---:|---:|---:|',
    );
    for (const [name, s] of Object.entries(byStep)) {
      lines.push(
        `| ${name} | ${s.throughput} | ${s.cpuMicrosPerRequest} | ${range(s.cpuMicrosOverA, 0)} | ${s.previous ? `${range(s.cpuMicrosAddedOverPrevious, 0)} over ${s.previous}` : '—'} | ${range(s.cpu_over_a)} | ${range(s.throughput_over_a)} |`,
      );
    }
    const largest = summary.largestPlainStep[route];
    if (largest) {
      lines.push(
        '',
        `Largest plain OpenTelemetry step on ${route}: **${largest.step}**, ${largest.cpuMicrosAdded >= 0 ? '+' : ''}${largest.cpuMicrosAdded} µs CPU per request over the step before it.`,
      );
    }
  }
  return `${lines.join('\n')}\n`;
}
