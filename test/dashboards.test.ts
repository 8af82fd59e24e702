/**
 * dashboards/: the Prometheus rules under promtool, the Grafana dashboard against @grafana/schema,
 * and every dashboard query and recording rule against a real Prometheus scraping the real
 * cost-app under `--require @request-budget/node/register`.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { defaultDashboard } from '@grafana/schema';
import ts from 'typescript';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  BUDGET_UNJUDGED,
  COST_DB_BYTES,
  COST_DB_QUERIES,
  COST_MEMORY_ALLOCATED_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_BYTES,
  COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
  routeOf,
} from '@request-budget/core';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { startApp, type AppProcess } from './support/app-process';
import { freePort } from './support/free-port';
import { repoRoot } from './support/paths';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver';
import { DEFAULT_JOB, startPrometheus, type RunningPrometheus, type VectorSample } from './support/prometheus';

const run = promisify(execFile);
const dashboardsDir = path.join(repoRoot, 'dashboards');
const dashboardFile = path.join(dashboardsDir, 'grafana', 'request-budget.json');
const recordingRulesFile = path.join(dashboardsDir, 'prometheus', 'recording-rules.yaml');
const alertRulesFile = path.join(dashboardsDir, 'prometheus', 'alert-rules.yaml');
const ruleTestsDir = path.join(dashboardsDir, 'prometheus', 'tests');

// ---- the dashboard and rules as data ----

interface Target {
  refId: string;
  expr: string;
  datasource: { type?: string; uid?: string };
  format?: string;
  instant?: boolean;
}
interface DashboardPanel {
  id: number;
  type: string;
  title: string;
  datasource: { type?: string; uid?: string };
  /** Absent on a row. */
  targets?: Target[];
  fieldConfig: {
    defaults: { links?: { title: string; url: string }[] };
    overrides: { matcher: { id: string; options?: unknown }; properties: { id: string; value?: unknown }[] }[];
  };
}
interface DashboardVariable {
  type: string;
  name: string;
  query?: string | { query: string };
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
  datasource?: { type?: string; uid?: string };
}
interface DashboardJson {
  schemaVersion: number;
  templating: { list: DashboardVariable[] };
  panels: DashboardPanel[];
}
interface RuleFile {
  groups: {
    name: string;
    rules: { record?: string; alert?: string; expr: string; for?: string; labels?: Record<string, string>; annotations?: Record<string, string> }[];
  }[];
}

const dashboardText = fs.readFileSync(dashboardFile, 'utf8');
const dashboard = JSON.parse(dashboardText) as DashboardJson;
const recordingRules = (parseYaml(fs.readFileSync(recordingRulesFile, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const alertRules = (parseYaml(fs.readFileSync(alertRulesFile, 'utf8')) as RuleFile).groups.flatMap((g) => g.rules);
const variables = new Map(dashboard.templating.list.map((v) => [v.name, v]));
const variableQuery = (v: DashboardVariable | undefined): string => (typeof v?.query === 'string' ? v.query : (v?.query?.query ?? ''));
const allTargets = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel, target })));
/** The panels of the Jobs row: every query is on job routes only (`route=~"job .*"`). */
const isJobPanel = (panel: DashboardPanel) => (panel.targets ?? []).length > 0 && panel.targets!.every((t) => t.expr.includes('route=~"job .*"'));

/** Grafana's substitution for a query run now: variables by value, built-ins by fixed intervals. */
function substitute(expr: string, values: { service: string; route: string }): string {
  const out = expr
    .replace(/\$(?:\{__rate_interval\}|__rate_interval)/g, '1m')
    .replace(/\$(?:\{__interval\}|__interval)/g, '15s')
    .replace(/\$(?:\{__range\}|__range)/g, '5m')
    .replace(/\$(?:\{service\}|service\b)/g, values.service)
    .replace(/\$(?:\{route\}|route\b)/g, values.route);
  // Only regex back-references ($1 in label_replace) may remain.
  expect(out, `unsubstituted variable in ${out}`).not.toMatch(/\$(?!\d)/);
  return out;
}

// ---- a small PromQL reader: which metrics and labels an expression uses ----

interface ExprUse {
  metrics: Set<string>;
  recorded: Set<string>;
  /** Selector matchers, per metric ('' for a bare {…}). */
  matchers: { metric: string; label: string; op: string; value: string }[];
  /** Labels in by/without/on/ignoring/group_left/group_right, label_replace sources, label_values. */
  labels: Set<string>;
  /** Labels label_replace creates. */
  created: Set<string>;
}

function readExpr(expr: string): ExprUse {
  const use: ExprUse = { metrics: new Set(), recorded: new Set(), matchers: [], labels: new Set(), created: new Set() };
  for (const m of expr.matchAll(/label_replace\([\s\S]*?,\s*"(\w+)",\s*"[^"]*",\s*"(\w+)",\s*"[^"]*"\s*\)/g)) {
    use.created.add(m[1]!);
    use.labels.add(m[2]!);
  }
  for (const m of expr.matchAll(/label_values\(\s*[^,]*,\s*(\w+)\s*\)/g)) use.labels.add(m[1]!);
  for (const m of expr.matchAll(/([A-Za-z_:][\w:]*)?\s*\{([^}]*)\}/g)) {
    for (const matcher of m[2]!.matchAll(/(\w+)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"/g)) {
      use.matchers.push({ metric: m[1] ?? '', label: matcher[1]!, op: matcher[2]!, value: matcher[3]! });
    }
  }
  // Identifiers outside strings and selectors.
  const bare = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\{[^}]*\}/g, '{}');
  for (const m of bare.matchAll(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g)) {
    for (const label of m[1]!
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean))
      use.labels.add(label);
  }
  for (const m of bare.matchAll(/(?<![\w:])request_budget_\w+/g)) use.metrics.add(m[0]);
  for (const m of bare.matchAll(/(?<![\w:])request_budget:[\w:]+/g)) use.recorded.add(m[0]);
  return use;
}

describe("readExpr (the test's PromQL reader)", () => {
  it('finds metrics, matchers, clause labels and label_replace labels', () => {
    const use = readExpr(
      'label_replace(sum by (job, route, le) (rate(request_budget_db_queries_bucket{job=~"$service", route=~"a|b"}[1m])) / on (route) group_left max by (route) (request_budget:x:y{metric="db.queries"}), "dst", "$1", "route", "(.*)")',
    );
    expect([...use.metrics]).toEqual(['request_budget_db_queries_bucket']);
    expect([...use.recorded]).toEqual(['request_budget:x:y']);
    expect(use.matchers).toEqual([
      { metric: 'request_budget_db_queries_bucket', label: 'job', op: '=~', value: '$service' },
      { metric: 'request_budget_db_queries_bucket', label: 'route', op: '=~', value: 'a|b' },
      { metric: 'request_budget:x:y', label: 'metric', op: '=', value: 'db.queries' },
    ]);
    expect([...use.labels].sort()).toEqual(['job', 'le', 'route']);
    expect([...use.created]).toEqual(['dst']);
  });
});

// ---- promtool ----

describe('Prometheus rules (promtool)', () => {
  it('promtool check rules accepts both rule files', async () => {
    const { stdout } = await run('promtool', ['check', 'rules', recordingRulesFile, alertRulesFile]);
    expect(stdout).toContain(`SUCCESS: ${recordingRules.length} rules found`);
    expect(stdout).toContain(`SUCCESS: ${alertRules.length} rules found`);
    expect(recordingRules.length).toBe(13);
    expect(alertRules.map((r) => r.alert)).toEqual([
      'RequestBudgetBreachRateHigh',
      'RequestBudgetOverBudget',
      'RequestBudgetLimitUnjudged',
      'RequestBudgetExportFailing',
      'RequestBudgetAlertsDropped',
    ]);
  });

  it('promtool test rules passes every file in dashboards/prometheus/tests', async () => {
    const files = fs
      .readdirSync(ruleTestsDir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => path.join('dashboards/prometheus/tests', f));
    expect(files.length).toBeGreaterThan(0);
    // Exit code 0 or execFile rejects with promtool's output.
    const { stdout } = await run('promtool', ['test', 'rules', ...files], { cwd: repoRoot });
    expect(stdout.match(/SUCCESS/g)).toHaveLength(files.length);
  });

  it('the alerts carry severity and summary/description naming the service and the route (or exporter, or sink)', () => {
    const subjects = ['{{ $labels.route }}', '{{ $labels.route }}', '{{ $labels.route }}', '{{ $labels.exporter }}', '{{ $labels.sink }}'];
    alertRules.forEach((rule, i) => {
      expect(rule.labels?.severity, rule.alert).toMatch(/^(info|warning|critical)$/);
      for (const text of [rule.annotations?.summary, rule.annotations?.description]) {
        expect(text, rule.alert).toContain('{{ $labels.service }}');
        expect(text, rule.alert).toContain(subjects[i]);
      }
      // Keyed by service: never summed into one series per Prometheus job.
      expect(rule.expr, rule.alert).not.toMatch(/\bjob\b/);
    });
    expect(alertRules.map((r) => r.for)).toEqual(['10m', '15m', '30m', '5m', undefined]);
    // Limits not judged page nobody: no request is known to be over budget (the annotation says so).
    const unjudged = alertRules.find((r) => r.alert === 'RequestBudgetLimitUnjudged')!;
    expect(unjudged.labels?.severity).toBe('info');
    expect(unjudged.annotations?.description).toContain('Severity info: no request is known to be over budget');
    // Judged on counted breaches, not on a histogram quantile.
    expect(alertRules.map((r) => r.expr).join('\n')).not.toContain('p95');
    for (const rule of recordingRules) expect(rule.expr, rule.record).not.toMatch(/\bjob\b/);
  });
});

// ---- the dashboard against @grafana/schema ----

/**
 * Compiles `dashboard = <json> satisfies CheckedDashboard` (see test/dashboards-typecheck.ts) for
 * each text, in one program, and returns the errors per text. The literal starts on line 1, so an
 * error's line is the JSON's line.
 */
function typeCheckDashboards(texts: string[]): string[][] {
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2023,
    lib: ['lib.es2023.d.ts'],
    module: ts.ModuleKind.Preserve,
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    skipLibCheck: true,
    types: [],
  };
  const files = new Map(
    texts.map((text, i) => [
      path.join(repoRoot, 'test', `__dashboard-check-${i}__.ts`),
      `import type { CheckedDashboard } from './dashboards-typecheck'; export const dashboard = ${text.trimEnd()} satisfies CheckedDashboard;\n`,
    ]),
  );
  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  host.getSourceFile = (name, language, ...rest) => {
    const text = files.get(name);
    return text === undefined ? getSourceFile.call(host, name, language, ...rest) : ts.createSourceFile(name, text, language);
  };
  host.fileExists = (name) => files.has(name) || fileExists.call(host, name);
  host.readFile = (name) => files.get(name) ?? readFile.call(host, name);
  const program = ts.createProgram([...files.keys()], options, host);
  const global = [...program.getGlobalDiagnostics(), ...program.getOptionsDiagnostics()];
  expect(global.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'))).toEqual([]);
  return [...files.keys()].map((name) =>
    ts.getPreEmitDiagnostics(program, program.getSourceFile(name)).map((d) => {
      const line = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line + 1 : 0;
      return `line ${line}: TS${d.code} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
    }),
  );
}

describe('Grafana dashboard', () => {
  it('type-checks against @grafana/schema', () => {
    expect(typeCheckDashboards([dashboardText])).toEqual([[]]);
  });

  it('the type check fails on a misspelt field, a wrong enum value and a wrong type', () => {
    const mutate = (from: RegExp, to: string) => {
      const text = dashboardText.replace(from, to);
      expect(text).not.toBe(dashboardText);
      return text;
    };
    const cases: [string, string, RegExp][] = [
      ['panel field', mutate(/"gridPos"/, '"gridPoss"'), /'"gridPoss"' does not exist/],
      ['timeseries option', mutate(/"showLegend"/, '"showLegnd"'), /'"showLegnd"' does not exist/],
      ['series style', mutate(/"lineWidth"/, '"lineWidht"'), /'"lineWidht"' does not exist/],
      ['target field', mutate(/"legendFormat"/, '"legendFromat"'), /'"legendFromat"' does not exist/],
      ['data link field', mutate(/"targetBlank"/, '"targetblank"'), /'"targetblank"' does not exist/],
      ['variable field', mutate(/"includeAll"/, '"includeALL"'), /'"includeALL"' does not exist/],
      ['variable type', mutate(/"type": "textbox"/, '"type": "textbx"'), /'"textbx"' is not assignable to type 'VariableType'/],
      ['tooltip mode', mutate(/"mode": "multi"/, '"mode": "many"'), /'"many"' is not assignable/],
      ['table cell height', mutate(/"cellHeight": "sm"/, '"cellHeight": "small"'), /'"small"' is not assignable/],
      ['gridPos type', mutate(/"w": 12/, '"w": "12"'), /Type 'string' is not assignable to type 'number'/],
      ['missing required field', mutate(/"showHeader": true,/, ''), /Property 'showHeader' is missing/],
    ];
    const results = typeCheckDashboards(cases.map(([, text]) => text));
    cases.forEach(([what, , expected], i) => {
      expect(results[i]!.length, `${what}: ${results[i]!.join('; ')}`).toBe(1);
      expect(results[i]![0], what).toMatch(expected);
    });
  });

  it('uses the schemaVersion of @grafana/schema and ${datasource} on every panel and target', () => {
    expect(dashboard.schemaVersion).toBe(defaultDashboard.schemaVersion);
    expect(dashboard.schemaVersion).toBe(42);
    for (const { panel, target } of allTargets) {
      expect(panel.datasource, panel.title).toEqual({ type: 'prometheus', uid: '${datasource}' });
      expect(target.datasource, `${panel.title} ${target.refId}`).toEqual({ type: 'prometheus', uid: '${datasource}' });
    }
    expect(new Set(dashboard.panels.map((p) => p.id)).size).toBe(dashboard.panels.length);
  });

  it('has the datasource, service, route and jaeger_url variables', () => {
    expect(dashboard.templating.list.map((v) => v.name)).toEqual(['datasource', 'service', 'route', 'jaeger_url']);
    expect(variables.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
    for (const name of ['service', 'route']) {
      expect(variables.get(name), name).toMatchObject({ type: 'query', multi: true, includeAll: true, allValue: '.*', datasource: { uid: '${datasource}' } });
    }
    expect(variableQuery(variables.get('service'))).toBe('label_values(request_budget_request_duration_ms_count, service)');
    expect(variableQuery(variables.get('route'))).toBe('label_values(request_budget_request_duration_ms_count{service=~"$service"}, route)');
    expect(variables.get('jaeger_url')).toMatchObject({ type: 'textbox', query: 'http://localhost:16686' });
  });

  it('has the cost, breach, budget, rate and duration panels, each filtered by $service and $route', () => {
    const titles = dashboard.panels.map((p) => p.title);
    expect(titles).toEqual([
      'Request rate',
      'p95 duration',
      'Top routes by p95 DB queries',
      'Top routes by p95 DB time',
      'Top routes by p95 rows returned',
      'Memory per request (estimate under load)',
      'Budget breaches by route and metric',
      'Routes against their query budget',
      'Top routes by DB result bytes per request',
      'Limits not judged, by route and metric',
      'Jobs',
      'Job rate',
      'Jobs: p95 duration',
      'Jobs: top p95 DB queries',
      'Job budget breaches by job and metric',
      'Jobs enqueued by route',
    ]);
    expect(dashboard.panels.filter(isJobPanel).map((p) => p.title)).toEqual([
      'Job rate',
      'Jobs: p95 duration',
      'Jobs: top p95 DB queries',
      'Job budget breaches by job and metric',
    ]);
    expect(dashboard.panels.find((p) => p.title === 'Jobs')).toMatchObject({ type: 'row', collapsed: false, panels: [] });
    const exprOf = (title: string) =>
      dashboard.panels
        .find((p) => p.title === title)!
        .targets!.map((t) => t.expr)
        .join('\n');
    expect(exprOf('Top routes by p95 DB queries')).toContain(
      'histogram_quantile(0.95, sum by (service, route, le) (rate(request_budget_db_queries_bucket{service=~"$service", route=~"$route"}[$__rate_interval])))',
    );
    expect(exprOf('Budget breaches by route and metric')).toContain('sum by (service, route, metric) (rate(request_budget_breaches_total{');
    expect(exprOf('Routes against their query budget')).toContain(
      'max by (service, route) (request_budget_limit{service=~"$service", route=~"$route", metric="db.queries"})',
    );
    expect(exprOf('Routes against their query budget')).not.toContain('histogram_quantile');
    // Memory from the figures that hold under load: the route estimate (replicas combined as the
    // recording rules combine them) with its error, never the heap delta, shared noise under load.
    const recordedExpr = (name: string) =>
      recordingRules
        .find((r) => r.record === name)!
        .expr.replace(/\s+/g, ' ')
        .trim();
    const onDashboard = (expr: string) =>
      expr.replaceAll(/(request_budget_memory_route_estimate(?:_error)?_bytes)/g, '$1{service=~"$service", route=~"$route"}');
    const memory = exprOf('Memory per request (estimate under load)').replace(/\s+/g, ' ');
    expect(memory).toContain(onDashboard(recordedExpr('request_budget:route_memory_estimate_bytes')));
    expect(memory).toContain(onDashboard(recordedExpr('request_budget:route_memory_estimate_error_bytes')));
    expect(dashboardText).not.toContain('heap_delta_bytes_bucket');
    expect(exprOf('Limits not judged, by route and metric')).toContain('sum by (service, route, metric) (rate(request_budget_unjudged_total{');
    expect(exprOf('Top routes by DB result bytes per request')).toContain('rate(request_budget_db_bytes_sum{');
    for (const { panel, target } of allTargets) {
      const matchers = readExpr(target.expr).matchers.filter((m) => m.metric.startsWith('request_budget_'));
      expect(matchers.length, panel.title).toBeGreaterThan(0);
      for (const m of matchers) {
        expect(
          matchers.filter((x) => x.metric === m.metric).map((x) => `${x.label}${x.op}${x.value}`),
          panel.title,
        ).toEqual(expect.arrayContaining(['service=~$service', 'route=~$route']));
      }
    }
  });

  it("links every route panel to the route's traces in Jaeger, and every job panel to the job's", () => {
    for (const panel of dashboard.panels.filter((p) => p.type !== 'row')) {
      const links =
        panel.type === 'table'
          ? (panel.fieldConfig.overrides.find((o) => o.matcher.options === 'route')?.properties.find((p) => p.id === 'links')?.value as { url: string }[])
          : panel.fieldConfig.defaults.links;
      expect(links?.length, panel.title).toBe(2);
      const source = panel.type === 'table' ? '__data.fields' : '__field.labels';
      for (const { url } of links!) {
        expect(url.startsWith('${jaeger_url}/search?'), url).toBe(true);
        const params = new URLSearchParams(url.slice(url.indexOf('?') + 1));
        expect(params.get('service')).toBe(`\${${source}.service:percentencode}`);
        const tags = JSON.parse(params.get('tags')!) as Record<string, string>;
        if (isJobPanel(panel)) expect(tags['request_budget.job.name']).toBe(`\${${source}.job_name:percentencode}`);
        else expect(tags['http.route']).toBe(`\${${source}.http_route:percentencode}`);
        expect(params.get('start')).toBe('${__from}000');
      }
    }
  });

  it('provisions a Prometheus data source and a dashboard provider for /var/lib/grafana/dashboards', () => {
    const datasources = parseYaml(fs.readFileSync(path.join(dashboardsDir, 'grafana/provisioning/datasources/prometheus.yaml'), 'utf8'));
    expect(datasources).toMatchObject({ apiVersion: 1, datasources: [{ type: 'prometheus', access: 'proxy', url: 'http://prometheus:9090' }] });
    const providers = parseYaml(fs.readFileSync(path.join(dashboardsDir, 'grafana/provisioning/dashboards/request-budget.yaml'), 'utf8'));
    expect(providers).toMatchObject({ apiVersion: 1, providers: [{ type: 'file', options: { path: '/var/lib/grafana/dashboards' } }] });
  });
});

// ---- against the real apps and a real Prometheus ----

/** Prometheus's number text ("NaN", "+Inf", "1.5") as a number. */
const num = (sample: VectorSample): number => Number(sample.value[1].replace(/^\+Inf$/, 'Infinity'));
/** The route of requests no route matched, and of Prometheus's scrapes of /metrics (requests of the apps too). */
const UNROUTED_GET = 'GET (unrouted)';
/** Two services, both scraped under the one job DEFAULT_JOB: only the `service` label tells them apart. */
const SERVICES = ['billing', 'shop'] as const;

describe('dashboard and rules on a real Prometheus scraping two services under one job', () => {
  const apps = new Map<string, AppProcess>();
  let receiver: OtlpReceiver;
  let prometheus: RunningPrometheus;
  let metricsText: string;
  /** Requests sent, by service and path. */
  const sent = new Map<string, number>();
  const sentTo = (service: string, p: string) => sent.get(`${service} ${p}`) ?? 0;

  /** Every root span (request or job) both services exported, once all have arrived. */
  let roots: ReceivedSpan[];

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    // The test budgets plus a heap limit on the barrier route, whose requests always overlap: a
    // limit left unjudged on every one of them (`heap.delta_bytes: 2 requests in flight`).
    const budgets = parseYaml(fs.readFileSync(path.join(repoRoot, 'test/fixtures/budgets.yaml'), 'utf8')) as { routes: object[] };
    budgets.routes.push({ match: 'GET /barrier/:group/:n', heapDeltaBytes: '64 MiB' });
    const budgetFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'rb-dashboards-')), 'budgets.yaml');
    fs.writeFileSync(budgetFile, stringifyYaml(budgets));
    const targets: string[] = [];
    for (const service of SERVICES) {
      const metricsPort = await freePort();
      targets.push(`127.0.0.1:${metricsPort}`);
      apps.set(
        service,
        await startApp({
          script: 'test/fixtures/cost-app.js',
          env: {
            OTEL_SERVICE_NAME: service,
            // An exporter and an alert sink, so their failure counters are published (at 0).
            OTEL_TRACES_EXPORTER: 'otlp',
            OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
            OTEL_EXPORTER_OTLP_PROTOCOL: 'http/protobuf',
            OTEL_METRICS_EXPORTER: 'prometheus',
            OTEL_EXPORTER_PROMETHEUS_HOST: '127.0.0.1',
            OTEL_EXPORTER_PROMETHEUS_PORT: String(metricsPort),
            REQUEST_BUDGET_FILE: budgetFile,
            // Every request measured, not those of sampling windows: each has its own allocation.
            REQUEST_BUDGET_MEMORY_SAMPLE_RATIO: '1',
            REQUEST_BUDGET_ALERT_LOG: 'true',
          },
        }),
      );
    }
    prometheus = await startPrometheus({ scrapeTargets: targets, scrapeIntervalSeconds: 1, ruleFiles: [recordingRulesFile, alertRulesFile] });

    // ~16 s of traffic to each service: every path breaches or never does.
    // /enqueue/2 also runs two email.send jobs (1 query each) and an email.digest (3: over budget).
    const paths = [
      '/queries/12',
      '/n-plus-one/8',
      '/rows/500',
      '/health',
      '/health',
      '/fetch',
      '/fetch?timed=1',
      '/queries/12',
      '/no-such-route',
      '/enqueue/2',
    ];
    const stopAt = Date.now() + 16_000;
    const next = new Map(SERVICES.map((service) => [service as string, 0]));
    const worker = async (service: string, app: AppProcess) => {
      while (Date.now() < stopAt) {
        const p = paths[next.get(service)! % paths.length]!;
        next.set(service, next.get(service)! + 1);
        const res = await fetch(`${app.url}${p}`, { signal: AbortSignal.timeout(5000) });
        await res.arrayBuffer();
        expect(res.status, p).toBe(p === '/no-such-route' ? 404 : 200);
        sent.set(`${service} ${p}`, sentTo(service, p) + 1);
        await new Promise((resolve) => setTimeout(resolve, 40));
      }
    };
    // Pairs of requests held until both have arrived, every half second, beside the workers.
    const barriers = async (service: string, app: AppProcess) => {
      for (let pair = 0; Date.now() < stopAt; pair += 1) {
        const responses = await Promise.all([0, 1].map(() => fetch(`${app.url}/barrier/${service}-${pair}/2`, { signal: AbortSignal.timeout(5000) })));
        for (const res of responses) {
          await res.arrayBuffer();
          expect(res.status).toBe(200);
        }
        sent.set(`${service} /barrier`, sentTo(service, '/barrier') + 2);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
    };
    // Two at a time to each: the breach rate of GET /queries/:n must clear the alert's 0.1/s, which
    // rate() works out over the whole 5-minute window, ~16 s of it with data.
    await Promise.all([...apps].flatMap(([service, app]) => [worker(service, app), worker(service, app), barriers(service, app)]));
    const trafficEnd = Date.now();
    // Every request's root span, and each /enqueue/2's three jobs', exported: the figures the metrics
    // are checked against. Not `GET (unrouted)`: Prometheus's scrapes of /metrics are requests of that
    // route too, and go on.
    const requests = (service: string) =>
      [...sent].filter(([key]) => key.startsWith(`${service} `) && key !== `${service} /no-such-route`).reduce((total, [, n]) => total + n, 0);
    const rootsOf = (spans: readonly ReceivedSpan[], service: string) =>
      spans.filter(
        (span) =>
          span.resource['service.name'] === service && span.attributes[COST_DB_QUERIES] !== undefined && routeOf(span.attributes).label !== UNROUTED_GET,
      );
    roots = await receiver.waitFor(
      (spans) => SERVICES.every((service) => rootsOf(spans, service).length === requests(service) + 3 * sentTo(service, '/enqueue/2')),
      { timeoutMs: 20_000 },
    );
    roots = SERVICES.flatMap((service) => rootsOf(roots, service));

    // Wait for a scrape of both targets that began after the last request, and a rule evaluation after it.
    const deadline = Date.now() + 15_000;
    for (;;) {
      const scraped = await prometheus.targets();
      if (scraped.length === 2 && scraped.every((t) => t.health === 'up' && Date.parse(t.lastScrape) > trafficEnd + 200)) break;
      if (Date.now() > deadline) throw new Error(`no fresh scrape: ${JSON.stringify(scraped)}\n${prometheus.logs.slice(-20).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    await new Promise((resolve) => setTimeout(resolve, 1500));
    metricsText = (await Promise.all(targets.map(async (target) => (await fetch(`http://${target}/metrics`)).text()))).join('\n');
  }, 90_000);

  afterAll(async () => {
    await prometheus?.stop();
    await Promise.all([...apps.values()].map((app) => app.stop()));
    await receiver?.close();
  });

  it('scraped both services under one job, and keeps them apart with exact request counts', async () => {
    expect((await prometheus.targets()).map((t) => t.labels.job)).toEqual([DEFAULT_JOB, DEFAULT_JOB]);
    for (const service of SERVICES) {
      const count = async (route: string, status = '2xx') =>
        (await prometheus.queryVector(`sum(request_budget_request_duration_ms_count{service="${service}", route="${route}", status_class="${status}"})`)).map(
          num,
        );
      expect(await count('GET /queries/:n')).toEqual([sentTo(service, '/queries/12')]);
      expect(await count('GET /health')).toEqual([sentTo(service, '/health')]);
      expect(await count('GET /fetch')).toEqual([sentTo(service, '/fetch') + sentTo(service, '/fetch?timed=1')]);
      expect(await count('GET (unrouted)', '4xx')).toEqual([sentTo(service, '/no-such-route')]);
      // Every /queries/12 request breaches its critical 10-query limit; only untimed fetches breach.
      const breaches = async (route: string, metric: string) =>
        (await prometheus.queryVector(`request_budget_breaches_total{service="${service}", route="${route}", metric="${metric}"}`)).map((s) => [
          s.metric.severity,
          num(s),
        ]);
      expect(await breaches('GET /queries/:n', 'db.queries')).toEqual([['critical', sentTo(service, '/queries/12')]]);
      expect(await breaches('GET /n-plus-one/:n', 'db.repeated_count')).toEqual([['warning', sentTo(service, '/n-plus-one/8')]]);
      expect(await breaches('GET /fetch', 'http_client.untimed')).toEqual([['warning', sentTo(service, '/fetch')]]);
    }
    // The two counts differ (each service ran its own traffic), and a job-wide sum would add them up.
    const all = (await prometheus.queryVector(`sum(request_budget_request_duration_ms_count{job="${DEFAULT_JOB}", route="GET /health"})`)).map(num);
    expect(all).toEqual([sentTo('billing', '/health') + sentTo('shop', '/health')]);
  });

  it('publishes export and alert failures per service: none here, with the exporter and sink named', async () => {
    const failures = async (metric: string) =>
      (await prometheus.queryVector(metric)).map((s) => `${s.metric.service} ${s.metric.exporter ?? s.metric.sink} ${num(s)}`).sort();
    expect(await failures('request_budget_export_failures_total')).toEqual(['billing otlp 0', 'shop otlp 0']);
    expect(await failures('request_budget_alert_failures_total')).toEqual(['billing log 0', 'shop log 0']);
    expect(await failures('request_budget_alert_drops_total')).toEqual(['billing log 0', 'shop log 0']);
    // The spans did reach the receiver: the counters are 0 because nothing failed.
    expect(receiver.serverSpans().length).toBeGreaterThan(0);
  });

  it('every panel target returns data, for one service and for all', async () => {
    for (const service of ['shop', '.*']) {
      for (const { panel, target } of allTargets) {
        const expr = substitute(target.expr, { service, route: '.*' });
        const result = await prometheus.queryVector(expr);
        expect(result.length, `${panel.title} ${target.refId} (service ${service}): ${expr}`).toBeGreaterThan(0);
        expect(new Set(result.map((s) => s.metric.service)), panel.title).toEqual(new Set(service === '.*' ? SERVICES : [service]));
        // The data links read service and http_route (job_name, on a job panel) from each series (or table row).
        if (isJobPanel(panel)) {
          expect(new Set(result.map((s) => s.metric.job_name)), panel.title).toEqual(
            new Set(panel.title.includes('breaches') ? ['email.digest'] : ['email.send', 'email.digest']),
          );
          for (const s of result) expect(s.metric.route, panel.title).toBe(`job ${s.metric.job_name}`);
          continue;
        }
        const httpRoutes = result.filter((s) => s.metric.route!.startsWith('GET /'));
        expect(httpRoutes.length, panel.title).toBeGreaterThan(0);
        for (const s of httpRoutes) expect(`GET ${s.metric.http_route}`, panel.title).toBe(s.metric.route);
      }
    }
  });

  it('the variable queries list the services and routes', async () => {
    const labelValues = async (expr: string) => {
      const m = /^label_values\((.*),\s*(\w+)\)$/.exec(expr)!;
      const values = new Set<string>();
      for (const s of await prometheus.queryVector(`group by (${m[2]}) (${m[1]})`)) values.add(s.metric[m[2]!]!);
      return [...values].sort();
    };
    expect(await labelValues(variableQuery(variables.get('service')))).toEqual([...SERVICES]);
    expect(await labelValues(substitute(variableQuery(variables.get('route')), { service: 'shop', route: '' }))).toEqual([
      'GET (unrouted)',
      'GET /barrier/:group/:n',
      'GET /enqueue/:n',
      'GET /fetch',
      'GET /health',
      'GET /n-plus-one/:n',
      'GET /queries/:n',
      'GET /rows/:n',
      'job email.digest',
      'job email.send',
    ]);
  });

  it('the budget table has one row per service and route, with the exact mean, limit and share of requests over budget', async () => {
    const table = dashboard.panels.find((p) => p.type === 'table')!;
    const rows = async (refId: string, service: string) => {
      const expr = substitute(table.targets!.find((t) => t.refId === refId)!.expr, { service, route: '.*' });
      return new Map((await prometheus.queryVector(expr)).map((s) => [`${s.metric.service} ${s.metric.route}`, num(s)]));
    };
    for (const service of ['shop', '.*']) {
      const [mean, limit, over] = [await rows('A', service), await rows('B', service), await rows('C', service)];
      const services = service === '.*' ? SERVICES : [service];
      for (const s of services) {
        // 12 queries each, over the limit of 10: every request over budget.
        expect(mean.get(`${s} GET /queries/:n`)).toBeCloseTo(12, 9);
        expect(limit.get(`${s} GET /queries/:n`)).toBe(10);
        expect(over.get(`${s} GET /queries/:n`)).toBe(1);
        // 9 queries (1 + 8), under the default 50: none over (its repeated_count breach is another limit).
        expect(mean.get(`${s} GET /n-plus-one/:n`)).toBeCloseTo(9, 9);
        expect(limit.get(`${s} GET /n-plus-one/:n`)).toBe(50);
        expect(over.get(`${s} GET /n-plus-one/:n`)).toBe(0);
        expect(mean.get(`${s} GET /health`)).toBe(0);
        expect(limit.get(`${s} GET /health`)).toBe(50);
        expect(over.get(`${s} GET /health`)).toBe(0);
        // Three queries against the jobs' limit of 2: every email.digest over budget.
        expect(over.get(`${s} job email.digest`)).toBe(1);
      }
      expect(new Set([...over.keys()].map((k) => k.split(' ')[0]))).toEqual(new Set(services));
    }
  });

  it('every recording rule returns data, with exact values where the traffic fixes them', async () => {
    for (const rule of recordingRules) {
      const result = await prometheus.queryVector(`${rule.record!}{service="shop"}`);
      expect(result.length, rule.record).toBeGreaterThan(0);
    }
    const value = async (expr: string) => (await prometheus.queryVector(expr)).map(num);
    for (const service of SERVICES) {
      const route = (r: string) => `{service="${service}", route="${r}"}`;
      // An estimate: 12 queries each, all in the (10, 20] bucket, so p95 = 10 + 10 * 0.95.
      expect(await value(`request_budget:route_queries:p95_5m${route('GET /queries/:n')}`)).toEqual([expect.closeTo(19.5, 9)]);
      expect(await value(`request_budget:route_queries:mean5m${route('GET /queries/:n')}`)).toEqual([expect.closeTo(12, 9)]);
      expect(await value(`request_budget:route_queries:mean5m${route('GET /rows/:n')}`)).toEqual([expect.closeTo(1, 9)]);
      expect(await value(`request_budget:route_rows:p95_5m${route('GET /rows/:n')}`)).toEqual([expect.closeTo(955, 9)]);
      expect(await value(`request_budget:route_over_budget:ratio5m{service="${service}", route="GET /queries/:n", metric="db.queries"}`)).toEqual([1]);
      expect(await value(`request_budget:route_limit{service="${service}", route="GET /queries/:n", metric="db.queries"}`)).toEqual([10]);
      // Every barrier request left its heap limit unjudged, and no other limit anywhere was.
      expect(await value(`request_budget:route_unjudged:ratio5m{service="${service}"}`)).toEqual([1]);
      // One replica: the combined estimate and error are its own (not GET (unrouted)'s, which scrapes go on moving).
      for (const [recorded, raw] of [
        ['request_budget:route_memory_estimate_bytes', 'request_budget_memory_route_estimate_bytes'],
        ['request_budget:route_memory_estimate_error_bytes', 'request_budget_memory_route_estimate_error_bytes'],
      ]) {
        const byRoute = async (expr: string) => new Map((await prometheus.queryVector(expr)).map((s) => [s.metric.route, num(s)]));
        const of = `{service="${service}", route!="${UNROUTED_GET}"}`;
        const own = await byRoute(`${raw}${of}`);
        expect(own.size, raw).toBeGreaterThan(0);
        expect(await byRoute(`${recorded}${of}`), recorded).toEqual(own);
      }
    }

    // Breach rates: exactly the breaching routes, each with its metric and severity.
    const breachSeries = await prometheus.queryVector('request_budget:breaches:rate5m{service="shop"}');
    expect(breachSeries.map((s) => `${s.metric.route} ${s.metric.metric} ${s.metric.severity}`).sort()).toEqual([
      'GET /fetch http_client.untimed warning',
      'GET /n-plus-one/:n db.repeated_count warning',
      'GET /queries/:n db.queries critical',
      'job email.digest db.queries warning',
    ]);
    for (const s of breachSeries) expect(num(s), s.metric.route).toBeGreaterThan(0);
    expect(await value('request_budget:breaches:rate5m{route="GET /health"}')).toEqual([]);
  });

  it('own allocation, DB bytes, memory estimates and unjudged limits are exactly what the exported root spans carried', async () => {
    type Tally = Map<string, { count: number; sum: number }>;
    const add = (tally: Tally, key: string, value: number) => {
      const entry = tally.get(key) ?? { count: 0, sum: 0 };
      tally.set(key, { count: entry.count + 1, sum: entry.sum + value });
    };
    const numberOf = (value: unknown) => (typeof value === 'number' ? value : undefined);
    for (const service of SERVICES) {
      const spans = roots.filter((span) => span.resource['service.name'] === service);
      const allocated: Tally = new Map();
      const dbBytes: Tally = new Map();
      const unjudged: Tally = new Map();
      /** Each route's spans that carried an estimate: when they ended, the estimate and its error. */
      const estimates = new Map<string, { end: bigint; pair: string }[]>();
      for (const span of spans) {
        const route = routeOf(span.attributes).label;
        const [own, bytes, mean, error] = [
          COST_MEMORY_ALLOCATED_BYTES,
          COST_DB_BYTES,
          COST_MEMORY_ROUTE_ESTIMATE_BYTES,
          COST_MEMORY_ROUTE_ESTIMATE_ERROR_BYTES,
        ].map((name) => numberOf(span.attributes[name]));
        if (own !== undefined) add(allocated, route, own);
        if (bytes !== undefined) add(dbBytes, route, bytes);
        if (mean !== undefined) estimates.set(route, [...(estimates.get(route) ?? []), { end: span.endTimeUnixNano, pair: `${mean} ± ${error}` }]);
        for (const entry of (span.attributes[BUDGET_UNJUDGED] ?? []) as string[]) add(unjudged, `${route} ${entry.slice(0, entry.indexOf(': '))}`, 0);
      }
      const scraped = async (expr: string, key = (s: VectorSample) => s.metric.route!) =>
        new Map((await prometheus.queryVector(expr)).map((s) => [key(s), num(s)]));
      const field = (tally: Tally, name: 'count' | 'sum') => new Map([...tally].map(([key, entry]) => [key, entry[name]]));
      const of = `{service="${service}", route!="${UNROUTED_GET}"}`;
      expect(await scraped(`sum by (route) (request_budget_memory_allocated_bytes_count${of})`)).toEqual(field(allocated, 'count'));
      expect(await scraped(`sum by (route) (request_budget_memory_allocated_bytes_sum${of})`)).toEqual(field(allocated, 'sum'));
      expect(await scraped(`sum by (route) (request_budget_db_bytes_count${of})`)).toEqual(field(dbBytes, 'count'));
      expect(await scraped(`sum by (route) (request_budget_db_bytes_sum${of})`)).toEqual(field(dbBytes, 'sum'));
      // The gauges hold the last estimate and error a route's spans carried: those of the span that
      // ended last. Spans stamp their end on a clock anchored to Date.now() as each starts, so spans
      // that ended within 3 ms of the last are as likely to have been last: the pair is one of theirs.
      const mean = await scraped(`request_budget_memory_route_estimate_bytes${of}`);
      const error = await scraped(`request_budget_memory_route_estimate_error_bytes${of}`);
      expect([...mean.keys()].sort()).toEqual([...estimates.keys()].sort());
      expect([...error.keys()].sort()).toEqual([...estimates.keys()].sort());
      for (const [route, carried] of estimates) {
        const lastEnd = carried.reduce((last, { end }) => (end > last ? end : last), 0n);
        const lastPairs = carried.filter(({ end }) => end >= lastEnd - 3_000_000n).map(({ pair }) => pair);
        expect(lastPairs, route).toContain(`${mean.get(route)} ± ${error.get(route)}`);
      }
      const unjudgedKey = (s: VectorSample) => `${s.metric.route} ${s.metric.metric}`;
      expect(await scraped(`request_budget_unjudged_total${of}`, unjudgedKey)).toEqual(field(unjudged, 'count'));
      // Not vacuous: every request's own allocation (memory attribution is on by default), a DB bytes
      // figure for the requests that made no query, an estimate for a route with 5 requests or more,
      // and exactly the barrier requests' heap limit unjudged.
      expect(allocated.get('GET /health')?.count).toBe(sentTo(service, '/health'));
      expect(dbBytes.get('GET /health')).toEqual({ count: sentTo(service, '/health'), sum: 0 });
      expect(estimates.has('GET /health') && estimates.has('GET /barrier/:group/:n')).toBe(true);
      expect(field(unjudged, 'count')).toEqual(new Map([['GET /barrier/:group/:n heap.delta_bytes', sentTo(service, '/barrier')]]));
    }
  });

  it('alerts: over budget is pending for GET /queries/:n of each service only, said with its counted share and its limit', async () => {
    const alerts = await prometheus.alerts();
    const of = (name: string) => alerts.filter((a) => a.labels.alertname === name);
    // Not job email.digest: every run is over its limit, but the limit is a warning one.
    expect(
      of('RequestBudgetOverBudget')
        .map((a) => `${a.labels.service} ${a.labels.route} ${a.labels.metric} ${a.state} ${a.labels.severity}`)
        .sort(),
    ).toEqual(['billing GET /queries/:n db.queries pending critical', 'shop GET /queries/:n db.queries pending critical']);
    expect(
      of('RequestBudgetOverBudget')
        .map((a) => [a.annotations.summary, a.annotations.description])
        .sort(),
    ).toEqual(
      SERVICES.map((service) => [
        `GET /queries/:n of ${service}: 100% of requests over the db.queries limit`,
        `100% of the requests to GET /queries/:n of ${service} over the last 5 minutes exceeded the route's critical db.queries limit of 10 (threshold 5%), for 15 minutes. The breached traces are in Jaeger (tag budget.breached=true); for db.queries, look for an N+1 (db.repeated_count).`,
      ]),
    );
    const breachRoutes = new Set(of('RequestBudgetBreachRateHigh').map((a) => `${a.labels.service} ${a.labels.route}`));
    for (const service of SERVICES) {
      expect(breachRoutes.has(`${service} GET /queries/:n`), JSON.stringify(alerts)).toBe(true);
      for (const route of ['GET /health', 'GET /rows/:n', 'GET (unrouted)']) expect(breachRoutes.has(`${service} ${route}`), route).toBe(false);
    }
    expect(of('RequestBudgetExportFailing')).toEqual([]);
    expect(of('RequestBudgetAlertsDropped')).toEqual([]);
    // Every barrier request's heap limit unjudged: pending (for 30 minutes before it fires), at info.
    expect(
      of('RequestBudgetLimitUnjudged')
        .map((a) => `${a.labels.service} ${a.labels.route} ${a.labels.metric} ${a.state} ${a.labels.severity}: ${a.annotations.summary}`)
        .sort(),
    ).toEqual(
      SERVICES.map(
        (service) =>
          `${service} GET /barrier/:group/:n heap.delta_bytes pending info: GET /barrier/:group/:n of ${service}: the heap.delta_bytes limit could not be judged on 100% of requests`,
      ),
    );
  });

  it('every metric, label and label value the dashboard and rules use is one the apps export', () => {
    // Sample lines of the apps' /metrics: name{labels} value.
    const exported = new Map<string, Map<string, Set<string>>>();
    for (const line of metricsText.split('\n')) {
      const m = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? \S+$/.exec(line);
      if (!m) continue;
      const labels = exported.get(m[1]!) ?? new Map<string, Set<string>>();
      exported.set(m[1]!, labels);
      for (const l of (m[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
        labels.set(l[1]!, (labels.get(l[1]!) ?? new Set()).add(l[2]!));
      }
    }
    // Every request-budget metric carries the service.
    for (const [name, labels] of exported)
      if (name.startsWith('request_budget_')) expect([...(labels.get('service') ?? [])].sort(), name).toEqual([...SERVICES]);
    const byPrometheus = ['job', 'instance']; // target labels added at scrape time
    const allLabels = new Set([...byPrometheus, ...[...exported].filter(([n]) => n.startsWith('request_budget_')).flatMap(([, l]) => [...l.keys()])]);
    const recorded = new Set(recordingRules.map((r) => r.record!));

    const sources = [
      ...allTargets.map(({ panel, target }) => ({ where: `${panel.title} ${target.refId}`, expr: target.expr })),
      ...['service', 'route'].map((name) => ({ where: `variable ${name}`, expr: variableQuery(variables.get(name)) })),
      ...recordingRules.map((r) => ({ where: r.record!, expr: r.expr })),
      ...alertRules.map((r) => ({ where: r.alert!, expr: r.expr })),
    ];
    const usedMetrics = new Set<string>();
    for (const { where, expr } of sources) {
      const use = readExpr(expr);
      for (const metric of use.metrics) {
        usedMetrics.add(metric);
        expect(exported.has(metric), `${where}: metric ${metric}`).toBe(true);
      }
      for (const name of use.recorded) expect(recorded.has(name), `${where}: recorded series ${name}`).toBe(true);
      for (const label of use.labels) expect(allLabels.has(label) || use.created.has(label), `${where}: label ${label}`).toBe(true);
      for (const m of use.matchers) {
        if (!m.metric.startsWith('request_budget_')) continue;
        const labels = exported.get(m.metric)!;
        expect(labels.has(m.label) || byPrometheus.includes(m.label), `${where}: ${m.metric} has no label ${m.label}`).toBe(true);
        // Exact-match values must be ones the apps export.
        if (m.op === '=') expect([...(labels.get(m.label) ?? [])], `${where}: ${m.label}="${m.value}"`).toContain(m.value);
      }
    }
    expect([...usedMetrics].sort()).toEqual([
      'request_budget_alert_drops_total',
      'request_budget_breaches_total',
      'request_budget_db_bytes_count',
      'request_budget_db_bytes_sum',
      'request_budget_db_queries_bucket',
      'request_budget_db_queries_count',
      'request_budget_db_queries_sum',
      'request_budget_db_rows_bucket',
      'request_budget_db_time_ms_bucket',
      'request_budget_export_failures_total',
      'request_budget_jobs_enqueued_total',
      'request_budget_limit',
      'request_budget_memory_route_estimate_bytes',
      'request_budget_memory_route_estimate_error_bytes',
      'request_budget_request_duration_ms_bucket',
      'request_budget_request_duration_ms_count',
      'request_budget_unjudged_total',
    ]);
  });
});
