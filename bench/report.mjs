/**
 * Turns `npm run bench`'s samples into bench/results/latest.json, latest.md and latest.png:
 * medians per configuration and route, ratios between configurations taken round by round
 * (median, min and max of the per-round ratios; "overall" pools both routes' rounds), and
 * whether each target holds. Ratios and targets whose configurations were not run are left out.
 */
import { Resvg } from '@resvg/resvg-js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, perRoundRatios, spread } from './paired-ratios.mjs';

const RESULTS_DIR = join(dirname(fileURLToPath(import.meta.url)), 'results');

/** Each ratio: configuration x over configuration y, of one measured field. */
export const RATIOS = {
  d_over_e: { x: 'd', y: 'e', field: 'throughput', describe: 'd / e throughput' },
  cpu_d_over_e: { x: 'd', y: 'e', field: 'cpuMicrosPerRequest', describe: 'd / e CPU per request' },
  p99_d_over_e: { x: 'd', y: 'e', field: 'p99', describe: 'd / e p99 latency' },
  c_over_b: { x: 'c', y: 'b', field: 'throughput', describe: 'c / b throughput' },
  cpu_c_over_b: { x: 'c', y: 'b', field: 'cpuMicrosPerRequest', describe: 'c / b CPU per request' },
  p99_c_over_b: { x: 'c', y: 'b', field: 'p99', describe: 'c / b p99 latency' },
  f_over_a: { x: 'f', y: 'a', field: 'throughput', describe: 'f / a throughput' },
  cpu_f_over_a: { x: 'f', y: 'a', field: 'cpuMicrosPerRequest', describe: 'f / a CPU per request' },
  d_over_g: { x: 'd', y: 'g', field: 'throughput', describe: 'd / g throughput (memory attribution)' },
  cpu_d_over_g: { x: 'd', y: 'g', field: 'cpuMicrosPerRequest', describe: 'd / g CPU per request (memory attribution)' },
};

/** The targets; `route` for a target that must hold on that route, none for the overall ratio. */
export const TARGETS = {
  throughput_d_vs_e_q3: {
    ratio: 'd_over_e',
    route: 'q3',
    target: '>= 0.95',
    holds: (v) => v >= 0.95,
    describe: 'at 10% sampling, request-budget keeps ≥ 95% of plain OpenTelemetry throughput (3-query route)',
  },
  throughput_d_vs_e_q20: {
    ratio: 'd_over_e',
    route: 'q20',
    target: '>= 0.95',
    holds: (v) => v >= 0.95,
    describe: 'at 10% sampling, request-budget keeps ≥ 95% of plain OpenTelemetry throughput (21-query route)',
  },
  cpu_d_vs_e_q3: {
    ratio: 'cpu_d_over_e',
    route: 'q3',
    target: '<= 1.05',
    holds: (v) => v <= 1.05,
    describe: 'at 10% sampling, request-budget uses ≤ 1.05× plain OpenTelemetry CPU per request (3-query route)',
  },
  cpu_d_vs_e_q20: {
    ratio: 'cpu_d_over_e',
    route: 'q20',
    target: '<= 1.05',
    holds: (v) => v <= 1.05,
    describe: 'at 10% sampling, request-budget uses ≤ 1.05× plain OpenTelemetry CPU per request (21-query route)',
  },
  throughput_c_vs_b: {
    ratio: 'c_over_b',
    target: '>= 0.95',
    holds: (v) => v >= 0.95,
    describe: 'request-budget full keeps ≥ 95% of plain OpenTelemetry throughput (both routes)',
  },
  cpu_memory_attribution: {
    ratio: 'cpu_d_over_g',
    target: '<= 1.02',
    holds: (v) => v <= 1.02,
    describe: 'memory attribution, with its default sampling windows, costs ≤ 2% CPU per request (both routes)',
  },
  p99_d_vs_e: {
    ratio: 'p99_d_over_e',
    target: '<= 1.10',
    holds: (v) => v <= 1.1,
    describe: 'at 10% sampling, request-budget p99 latency ≤ 1.1× plain OpenTelemetry (both routes)',
  },
};

export function summarise(samples, otlpBytesPerRequest = {}) {
  const medians = mapValues(samples, (routes) =>
    mapValues(routes, (list) => ({
      throughput: median(list.map((s) => s.throughput)),
      p99: median(list.map((s) => s.p99)),
      cpuMicrosPerRequest: median(list.map((s) => s.cpuMicrosPerRequest)),
      rss: median(list.map((s) => s.rss)),
    })),
  );
  const routes = Object.keys(Object.values(samples)[0] ?? {});
  const perRoute = Object.fromEntries(routes.map((route) => [route, {}]));
  const routeSpread = Object.fromEntries(routes.map((route) => [route, {}]));
  const ratios = {};
  const overallSpread = {};
  for (const [name, { x, y, field }] of Object.entries(RATIOS)) {
    if (!samples[x] || !samples[y]) continue;
    const pooled = [];
    for (const route of routes) {
      const values = perRoundRatios(samples[x][route], samples[y][route], field);
      if (values.length === 0) continue;
      routeSpread[route][name] = spread(values);
      perRoute[route][name] = routeSpread[route][name].median;
      pooled.push(...values);
    }
    if (pooled.length === 0) continue;
    overallSpread[name] = spread(pooled);
    ratios[name] = overallSpread[name].median;
  }
  for (const route of routes) perRoute[route].spread = routeSpread[route];
  const targets = {};
  for (const [name, t] of Object.entries(TARGETS)) {
    const value = t.route ? perRoute[t.route]?.[t.ratio] : ratios[t.ratio];
    if (value !== undefined) targets[name] = { value, target: t.target, holds: t.holds(value), describe: t.describe, ratio: t.ratio, route: t.route ?? 'both' };
  }
  const otlp = mapValues(otlpBytesPerRequest, (perRound) => ({ median: Math.round(median(perRound)), perRound: perRound.map(Math.round) }));
  return { medians, ratios, spread: overallSpread, perRoute, targets, otlpBytesPerRequest: otlp };
}

export async function writeReport({ samples, otlpBytesPerRequest, labels, env }) {
  const summary = summarise(samples, otlpBytesPerRequest);
  mkdirSync(RESULTS_DIR, { recursive: true });
  const json = {
    ratios: summary.ratios,
    spread: summary.spread,
    targets: summary.targets,
    perRoute: summary.perRoute,
    medians: summary.medians,
    otlpBytesPerRequest: summary.otlpBytesPerRequest,
    labels,
    env,
    samples,
  };
  const files = [join(RESULTS_DIR, 'latest.json'), join(RESULTS_DIR, 'latest.md'), join(RESULTS_DIR, 'latest.png')];
  const md = markdown(summary, labels, env);
  writeFileSync(files[0], `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(files[1], md);
  writeFileSync(files[2], new Resvg(chartSvg(summary), { font: { loadSystemFonts: true } }).render().asPng());
  process.stdout.write(`\n${md}`);
  return files;
}

function markdown(summary, labels, env) {
  const lines = [
    '# Benchmark results',
    '',
    `${env.date} · Node ${env.node} · ${env.cpus} cores (${env.cpuModel}) · ${env.rounds} rounds × ${env.seconds} s per configuration and route, ${env.connections} connections, configurations interleaved per round · ${env.wallSeconds} s wall`,
    '',
    'Ratios are taken round by round (each round runs every configuration once) and reported as the median of the per-round ratios, with min and max.',
    '',
    '| configuration | OTLP bytes exported per request |',
    '|---|---:|',
    ...Object.entries(labels).map(([config, label]) => `| (${config}) ${label} | ${summary.otlpBytesPerRequest[config]?.median ?? '—'} |`),
  ];
  for (const [route, ratios] of Object.entries(summary.perRoute)) {
    lines.push('', `## ${route} ${env.routes[route]}`, '', '| configuration | req/s | p99 ms | CPU µs/req | RSS MiB |', '|---|---:|---:|---:|---:|');
    for (const [config, routes] of Object.entries(summary.medians)) {
      const m = routes[route];
      lines.push(
        `| (${config}) ${labels[config]} | ${m.throughput.toFixed(0)} | ${m.p99.toFixed(0)} | ${m.cpuMicrosPerRequest.toFixed(0)} | ${(m.rss / 2 ** 20).toFixed(0)} |`,
      );
    }
    lines.push('', '| ratio | median | min | max | target | holds |', '|---|---:|---:|---:|---|---|');
    for (const [name, s] of Object.entries(ratios.spread)) {
      const target = Object.values(summary.targets).find((t) => t.ratio === name && t.route === route);
      lines.push(
        `| ${RATIOS[name].describe} (${name}) | ${s.median.toFixed(3)} | ${s.min.toFixed(3)} | ${s.max.toFixed(3)} | ${target ? target.target : '—'} | ${target ? yesNo(target.holds) : '—'} |`,
      );
    }
  }
  lines.push(
    '',
    '## Both routes (per-round ratios of both routes pooled)',
    '',
    '| ratio | median | min | max | target | holds |',
    '|---|---:|---:|---:|---|---|',
  );
  for (const [name, s] of Object.entries(summary.spread)) {
    const target = Object.values(summary.targets).find((t) => t.ratio === name && t.route === 'both');
    lines.push(
      `| ${RATIOS[name].describe} (${name}) | ${s.median.toFixed(3)} | ${s.min.toFixed(3)} | ${s.max.toFixed(3)} | ${target ? target.target : '—'} | ${target ? yesNo(target.holds) : '—'} |`,
    );
  }
  lines.push('', '## Targets', '', '| target | value | wanted | holds |', '|---|---:|---|---|');
  for (const [name, t] of Object.entries(summary.targets)) lines.push(`| ${t.describe} (${name}) | ${t.value.toFixed(3)} | ${t.target} | ${yesNo(t.holds)} |`);
  if (Object.keys(summary.targets).length === 0) lines.push("| (no target's configurations were run) | | | |");
  return `${lines.join('\n')}\n`;
}

const yesNo = (holds) => (holds ? 'yes' : '**no**');

/** One bar per ratio and route (and both routes pooled): the median, a whisker from min to max, the target where one applies. */
function chartSvg(summary) {
  const rows = [];
  for (const name of Object.keys(summary.spread)) {
    for (const [route, s] of [...Object.entries(summary.perRoute).map(([route, r]) => [route, r.spread[name]]), ['both', summary.spread[name]]]) {
      if (!s) continue;
      const target = Object.values(summary.targets).find((t) => t.ratio === name && t.route === route);
      rows.push({ label: `${RATIOS[name].describe}, ${route}`, s, target });
    }
  }
  const width = 760;
  const rowHeight = 26;
  const left = 250;
  const top = 50;
  const maxValue = Math.min(4, Math.max(1.2, ...rows.map((r) => r.s.max)) * 1.08);
  const scale = (value) => left + (Math.min(value, maxValue) / maxValue) * (width - left - 60);
  const targetNumber = (t) => Number(t.target.replace(/[<>=\s]/g, ''));
  const body = rows
    .map(({ label, s, target }, i) => {
      const y = top + i * rowHeight;
      const fill = target === undefined ? '#8a8f98' : target.holds ? '#3b8a4f' : '#c0392b';
      const whisker = `<line x1="${scale(s.min)}" x2="${scale(s.max)}" y1="${y + 9}" y2="${y + 9}" stroke="#222"/><line x1="${scale(s.min)}" x2="${scale(s.min)}" y1="${y + 4}" y2="${y + 14}" stroke="#222"/><line x1="${scale(s.max)}" x2="${scale(s.max)}" y1="${y + 4}" y2="${y + 14}" stroke="#222"/>`;
      const targetLine =
        target === undefined
          ? ''
          : `<line x1="${scale(targetNumber(target))}" x2="${scale(targetNumber(target))}" y1="${y - 2}" y2="${y + 20}" stroke="#000" stroke-width="2" stroke-dasharray="3 2"/>`;
      return `<text x="10" y="${y + 14}" font-size="12">${label}</text><rect x="${left}" y="${y + 2}" width="${scale(s.median) - left}" height="14" fill="${fill}"/>${whisker}${targetLine}<text x="${Math.max(scale(s.median), scale(s.max)) + 6}" y="${y + 14}" font-size="12">${s.median.toFixed(3)}</text>`;
    })
    .join('');
  const height = top + rows.length * rowHeight + 30;
  const oneLine = `<line x1="${scale(1)}" x2="${scale(1)}" y1="${top - 8}" y2="${height - 30}" stroke="#888"/><text x="${scale(1) - 4}" y="${top - 12}" font-size="11">1.0</text>`;
  const legend = `<text x="10" y="${height - 10}" font-size="11">bar: median of per-round ratios · whisker: min–max over rounds · dashed: target (green holds, red does not, grey no target)</text>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif"><rect width="100%" height="100%" fill="#fff"/><text x="10" y="24" font-size="16" font-weight="bold">request-budget overhead (per-round ratios, same run)</text>${oneLine}${body}${legend}</svg>`;
}

function mapValues(object, fn) {
  return Object.fromEntries(Object.entries(object).map(([key, value]) => [key, fn(value)]));
}
