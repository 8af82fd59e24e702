import { describe, expect, it } from 'vitest';
import { parseBudgetText } from '../src/budget-file';
import { BudgetRuleSet } from '../src/budget-rules';
import { compileJobPattern, compileRoutePattern } from '../src/rule-pattern';

describe('route patterns', () => {
  it.each([
    ['GET /users/:id', 'GET', '/users/:id', true],
    ['GET /users/:id', 'get', '/users/:userId', true],
    ['GET /users/:id', 'POST', '/users/:id', false],
    ['GET /users/:id', 'GET', '/users/me', false],
    ['/users/:id', 'DELETE', '/users/:id', true],
    ['* /users/*', 'GET', '/users/me', true],
    ['* /users/*', 'GET', '/users/:id/orders', false],
    ['/users/**', 'GET', '/users', true],
    ['/users/**', 'GET', '/users/:id/orders', true],
    ['/**/orders', 'GET', '/users/:id/orders', true],
    ['/health/', 'GET', '/health', true],
    ['/', 'GET', '/', true],
    ['/', 'GET', '/health', false],
  ] as const)('%s matches %s %s: %s', (pattern, method, route, expected) => {
    const compiled = compileRoutePattern(pattern);
    expect(compiled.problem).toBeUndefined();
    expect(compiled.matches(method, route)).toBe(expected);
  });

  it.each([
    ['email.*', 'email.send', true],
    ['email.*', 'email.send.retry', false],
    ['email.**', 'email.send.retry', true],
    ['*.send', 'sms.send', true],
    ['reports.daily', 'reports.daily', true],
    ['reports.daily', 'reports.dailyX', false],
  ] as const)('job pattern %s matches %s: %s', (pattern, name, expected) => {
    expect(compileJobPattern(pattern).matches(name)).toBe(expected);
  });
});

describe('BudgetRuleSet', () => {
  const rules = new BudgetRuleSet(
    parseBudgetText(
      `version: 1
defaults: { queries: 20, durationMs: 1000, severity: info }
routes:
  - match: /users/**
    queries: 10
  - match: GET /users/:id
    queries: 3
    severity: critical
  - match: /users/:id
    queries: 5
  - match: GET /users/me
    queries: 1
  - match: /users
    queries: 7
  - match: GET /reports/:name
    durationMs: 5000
  - match: GET /reports/:id
    durationMs: 9000
jobs:
  - match: email.**
    durationMs: 2000
  - match: email.send
    durationMs: 500
`,
      'b.yaml',
    ),
  );

  it('picks the most specific rule wherever it stands in the file, merged over the defaults', () => {
    expect(rules.forRoute('GET', '/users/:id')).toEqual({
      name: 'GET /users/:id',
      limits: { queries: 3, durationMs: 1000 },
      severity: 'critical',
      heapMinConfidence: 'medium',
      allowRepeated: [],
    });
    expect(rules.forRoute('PUT', '/users/:id').name).toBe('/users/:id');
    expect(rules.forRoute('GET', '/users/me').name).toBe('GET /users/me');
    expect(rules.forRoute('GET', '/users').name).toBe('/users');
    expect(rules.forRoute('GET', '/users/:id/orders')).toMatchObject({ name: '/users/**', limits: { queries: 10 }, severity: 'info' });
  });

  it('falls back to the defaults with no matching rule or no route template', () => {
    expect(rules.forRoute('GET', '/orders')).toEqual({
      name: 'defaults',
      limits: { queries: 20, durationMs: 1000 },
      severity: 'info',
      heapMinConfidence: 'medium',
      allowRepeated: [],
    });
    expect(rules.forRoute('GET', undefined).name).toBe('defaults');
  });

  it('keeps file order between equally specific rules', () => {
    expect(rules.forRoute('GET', '/reports/:reportId')).toMatchObject({ name: 'GET /reports/:name', limits: { durationMs: 5000 } });
  });

  it('matches jobs by name, the most specific first', () => {
    expect(rules.forJob('email.send').limits.durationMs).toBe(500);
    expect(rules.forJob('email.digest.weekly').limits.durationMs).toBe(2000);
    expect(rules.forJob('sms.send').name).toBe('defaults');
  });
});

describe('rule lookups remembered', () => {
  const rules = new BudgetRuleSet(
    parseBudgetText(
      'version: 1\ndefaults:\n  queries: 50\nroutes:\n  - match: GET /users/:id\n    queries: 3\n  - match: /users/**\n    queries: 9\njobs:\n  - match: email.*\n    queries: 2\n',
      'rules.yaml',
    ),
  );

  it('answers a remembered route, method and job exactly as the first lookup did', () => {
    for (let pass = 0; pass < 3; pass += 1) {
      expect(rules.forRoute('GET', '/users/:id').name).toBe('GET /users/:id');
      expect(rules.forRoute('POST', '/users/:id').name).toBe('/users/**');
      expect(rules.forRoute(undefined, '/users/:id').name).toBe('/users/**');
      expect(rules.forRoute('GET', '/orders').name).toBe('defaults');
      expect(rules.forJob('email.send').limits.queries).toBe(2);
      expect(rules.forJob('sms.send').name).toBe('defaults');
    }
  });

  it('stays right past what it remembers: more names than it keeps, and names too long to keep', () => {
    for (let i = 0; i < 5000; i += 1) expect(rules.forRoute('GET', `/users/${i}/x`).name).toBe('/users/**');
    const long = `/users/${'a'.repeat(10_000)}`;
    expect(rules.forRoute('GET', long).name).toBe('/users/**');
    expect(rules.forRoute('GET', '/users/:id').name).toBe('GET /users/:id');
    expect(rules.forRoute('GET', '/elsewhere/1').name).toBe('defaults');
  });
});
