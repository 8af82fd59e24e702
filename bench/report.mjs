/**
 * Turns the benchmark's samples into bench/results/latest.json, latest.md and latest.png:
 * medians per configuration and route, ratios between configurations measured in the same
 * run (the geometric mean over both routes), and whether each target holds.
 */
import { Resvg } from '@resvg/resvg-js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

export const TARGETS = {
  throughput_c_vs_b: { ratio: 'c_over_b', target: '>= 0.97', holds: (v) => v >= 0.97, describe: 'request-budget full keeps ≥ 97% of plain OpenTelemetry throughput' },
  sampled_cost_d_vs_a: { ratio: 'd_over_a', target: '>= 0.85', holds: (v) => v >= 0.85, describe: 'with 10% sampling it costs ≤ 15% throughput against no instrumentation' },
  p99_c_vs_b: { ratio: 'p99_c_over_b', target: '<= 1.10', holds: (v) => v <= 1.1, describe: 'p99 latency of request-budget full ≤ 1.1× plain OpenTelemetry' },
};

export function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

function geometricMean(values) {
  return Math.exp(values.reduce((sum, value) => sum + Math.log(value), 0) / values.length);
}

export function summarise(samples) {
  const medians = {};
  for (const [config, routes] of Object.entries(samples)) {
    medians[config] = {};
    for (const [route, list] of Object.entries(routes)) {
      medians[config][route] = {
        throughput: median(list.map((s) => s.throughput)),
        p99: median(list.map((s) => s.p99)),
        cpuMicrosPerRequest: median(list.map((s) => s.cpuMicrosPerRequest)),
        rss: median(list.map((s) => s.rss)),
      };
    }
  }
  const routes = Object.keys(medians.a);
  const ratio = (x, y, field) => geometricMean(routes.map((route) => medians[x][route][field] / medians[y][route][field]));
  const ratios = {
    c_over_b: ratio('c', 'b', 'throughput'),
    c_over_a: ratio('c', 'a', 'throughput'),
    d_over_a: ratio('d', 'a', 'throughput'),
    p99_c_over_b: ratio('c', 'b', 'p99'),
  };
  const perRoute = Object.fromEntries(
    routes.map((route) => [
      route,
      {
        c_over_b: medians.c[route].throughput / medians.b[route].throughput,
        c_over_a: medians.c[route].throughput / medians.a[route].throughput,
        d_over_a: medians.d[route].throughput / medians.a[route].throughput,
        p99_c_over_b: medians.c[route].p99 / medians.b[route].p99,
      },
    ]),
  );
  const targets = Object.fromEntries(
    Object.entries(TARGETS).map(([name, t]) => [name, { value: round(ratios[t.ratio]), target: t.target, holds: t.holds(ratios[t.ratio]), describe: t.describe }]),
  );
  return { medians, ratios: mapValues(ratios, round), perRoute: mapValues(perRoute, (r) => mapValues(r, round)), targets };
}

export async function writeReport({ samples, labels, env }) {
  const summary = summarise(samples);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = { ratios: summary.ratios, targets: summary.targets, perRoute: summary.perRoute, medians: summary.medians, labels, env, samples };
  const files = [join(RESULTS_DIR, 'latest.json'), join(RESULTS_DIR, 'latest.md'), join(RESULTS_DIR, 'latest.png')];
  writeFileSync(files[0], `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(files[1], markdown(summary, labels, env));
  writeFileSync(files[2], new Resvg(chartSvg(summary), { font: { loadSystemFonts: true } }).render().asPng());
  process.stdout.write(`\n${markdown(summary, labels, env)}`);
  return files;
}

function markdown(summary, labels, env) {
  const lines = [
    `# Benchmark results`,
    '',
    `${env.date} · Node ${env.node} · ${env.cpus} cores (${env.cpuModel}) · ${env.rounds} rounds × ${env.seconds} s, ${env.connections} connections · medians`,
    '',
    '| configuration | route | req/s | p99 ms | CPU µs/req | RSS MiB |',
    '|---|---|---:|---:|---:|---:|',
  ];
  for (const [config, routes] of Object.entries(summary.medians)) {
    for (const [route, m] of Object.entries(routes)) {
      lines.push(`| (${config}) ${labels[config]} | ${route} ${env.routes[route]} | ${m.throughput.toFixed(0)} | ${m.p99.toFixed(0)} | ${m.cpuMicrosPerRequest.toFixed(0)} | ${(m.rss / 2 ** 20).toFixed(0)} |`);
    }
  }
  lines.push('', '| ratio | value | per route |', '|---|---:|---|');
  for (const [name, value] of Object.entries(summary.ratios)) {
    lines.push(`| ${name} | ${value.toFixed(3)} | ${Object.entries(summary.perRoute).map(([route, r]) => `${route} ${r[name].toFixed(3)}`).join(', ')} |`);
  }
  lines.push('', '| target | value | wanted | holds |', '|---|---:|---|---|');
  for (const [name, t] of Object.entries(summary.targets)) lines.push(`| ${t.describe} (${name}) | ${t.value.toFixed(3)} | ${t.target} | ${t.holds ? 'yes' : '**no**'} |`);
  return `${lines.join('\n')}\n`;
}

function chartSvg(summary) {
  const bars = [
    ['c / b throughput', summary.ratios.c_over_b, 0.97, 'min'],
    ['c / a throughput', summary.ratios.c_over_a, undefined, undefined],
    ['d / a throughput', summary.ratios.d_over_a, 0.85, 'min'],
    ['c / b p99 latency', summary.ratios.p99_c_over_b, 1.1, 'max'],
  ];
  const width = 640;
  const rowHeight = 56;
  const left = 170;
  const scale = (value) => left + (Math.min(value, 1.4) / 1.4) * (width - left - 70);
  const rows = bars
    .map(([label, value, target, kind], i) => {
      const y = 50 + i * rowHeight;
      const holds = target === undefined || (kind === 'min' ? value >= target : value <= target);
      const targetLine = target === undefined ? '' : `<line x1="${scale(target)}" x2="${scale(target)}" y1="${y - 6}" y2="${y + 30}" stroke="#000" stroke-dasharray="4 3"/><text x="${scale(target) + 3}" y="${y - 8}" font-size="11">target ${kind === 'min' ? '≥' : '≤'} ${target}</text>`;
      return `<text x="10" y="${y + 18}" font-size="14">${label}</text><rect x="${left}" y="${y}" width="${scale(value) - left}" height="24" fill="${holds ? '#3b8a4f' : '#c0392b'}"/><text x="${scale(value) + 6}" y="${y + 18}" font-size="14">${value.toFixed(3)}</text>${targetLine}`;
    })
    .join('');
  const oneLine = `<line x1="${scale(1)}" x2="${scale(1)}" y1="35" y2="${50 + bars.length * rowHeight}" stroke="#888"/><text x="${scale(1) - 4}" y="30" font-size="11">1.0</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${70 + bars.length * rowHeight}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="#fff"/><text x="10" y="22" font-size="16" font-weight="bold">request-budget overhead (ratios, same run)</text>${oneLine}${rows}</svg>`;
}

function round(value) {
  return Math.round(value * 1000) / 1000;
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value)]));
}
