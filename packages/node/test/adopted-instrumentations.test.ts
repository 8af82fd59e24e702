/**
 * request-budget's hooks on instrumentations it did not create: the app's own instances (set
 * through setConfig, after the app's own hooks) and any instrumentation-pg/-mysql2 instance
 * nobody hands over (another setup's, which replaced request-budget's).
 */
import type { Span } from '@opentelemetry/api';
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { MySQL2Instrumentation } from '@opentelemetry/instrumentation-mysql2';
import { PgInstrumentation, type PgInstrumentationConfig } from '@opentelemetry/instrumentation-pg';
import { UndiciInstrumentation, type UndiciInstrumentationConfig } from '@opentelemetry/instrumentation-undici';
import { describe, expect, it, vi } from 'vitest';
import { addRequestBudgetHooks, hookEveryDriverInstance } from '../src/adopted-instrumentations';

/** A span that only records the attributes set on it. */
function recordingSpan(): Span & { attributes: Record<string, unknown> } {
  const attributes: Record<string, unknown> = {};
  return { attributes, setAttribute: (key: string, value: unknown) => ((attributes[key] = value), undefined) } as unknown as Span & {
    attributes: Record<string, unknown>;
  };
}

const pgResult = { data: { rows: [{ id: 1 }, { id: 2 }, { id: 3 }] } };

describe('addRequestBudgetHooks', () => {
  it("adds the row hook after the app's own, and keeps the app's other settings", () => {
    const mine = vi.fn();
    const pg = new PgInstrumentation({ enabled: false, responseHook: mine, requireParentSpan: true });
    const returned = addRequestBudgetHooks([pg]);
    const config = pg.getConfig() as PgInstrumentationConfig;
    const span = recordingSpan();
    config.responseHook!(span, pgResult as never);
    expect(mine).toHaveBeenCalledTimes(1);
    expect(span.attributes['db.response.returned_rows']).toBe(3);
    expect(config.requireParentSpan).toBe(true);
    // The pool-context fix comes along with pg; the instance itself is handed back first.
    expect(returned[0]).toBe(pg);
    expect(returned.map((i) => i.instrumentationName)).toContain('@request-budget/pool-context');
  });

  it("merges the span attributes of the app's startSpanHook with request-budget's, and leaves unknown instrumentations alone", () => {
    const undici = new UndiciInstrumentation({ enabled: false, startSpanHook: () => ({ 'app.tag': 'mine' }) });
    const express = new ExpressInstrumentation({ enabled: false });
    const before = express.getConfig();
    addRequestBudgetHooks([[undici, express]]);
    const attributes = (undici.getConfig() as UndiciInstrumentationConfig).startSpanHook!({ method: 'GET', origin: 'http://x', path: '/' } as never);
    expect(attributes).toMatchObject({ 'app.tag': 'mine' });
    expect(express.getConfig()).toBe(before);
  });

  it('is idempotent: handed twice, an instance runs each hook once', () => {
    const mine = vi.fn();
    const pg = new PgInstrumentation({ enabled: false, responseHook: mine });
    addRequestBudgetHooks([pg]);
    addRequestBudgetHooks([pg]);
    const span = recordingSpan();
    const setAttribute = vi.spyOn(span, 'setAttribute');
    (pg.getConfig() as PgInstrumentationConfig).responseHook!(span, pgResult as never);
    expect([mine.mock.calls.length, setAttribute.mock.calls.length]).toEqual([1, 1]);
  });
});

describe('hookEveryDriverInstance', () => {
  it('gives every instrumentation-pg and -mysql2 instance the row hook, created before or after', () => {
    const before = new PgInstrumentation({ enabled: false });
    hookEveryDriverInstance();
    const after = new MySQL2Instrumentation({ enabled: false });
    const pgSpan = recordingSpan();
    (before.getConfig() as PgInstrumentationConfig).responseHook!(pgSpan, pgResult as never);
    expect(pgSpan.attributes['db.response.returned_rows']).toBe(3);
    const mysqlSpan = recordingSpan();
    (after.getConfig() as { responseHook: (span: Span, info: unknown) => void }).responseHook(mysqlSpan, { queryResults: [{ a: 1 }, { a: 2 }] });
    expect(mysqlSpan.attributes['db.response.returned_rows']).toBe(2);
    // The same config object each time: nothing is allocated per query.
    expect(before.getConfig()).toBe(before.getConfig());
  });

  it("runs a hooked instance's own hook once, and ours once", () => {
    hookEveryDriverInstance();
    const mine = vi.fn();
    const pg = new PgInstrumentation({ enabled: false, responseHook: mine });
    const span = recordingSpan();
    const setAttribute = vi.spyOn(span, 'setAttribute');
    (pg.getConfig() as PgInstrumentationConfig).responseHook!(span, pgResult as never);
    expect([mine.mock.calls.length, setAttribute.mock.calls.length]).toEqual([1, 1]);
  });
});
