/**
 * The amqplib companion's pure parts: a consumed message's job name, the publish hook that makes
 * every publish an enqueue, and its place beside an app's own instrumentation-amqplib. The rest
 * is checked end to end against RabbitMQ (test/stacks/amqplib.test.ts).
 */
import type { Span } from '@opentelemetry/api';
import { AmqplibInstrumentation } from '@opentelemetry/instrumentation-amqplib';
import { describe, expect, it } from 'vitest';
import { addRequestBudgetHooks } from '../src/adopted-instrumentations';
import { amqplibJobName, amqplibPublishHook } from '../src/jobs/amqplib-jobs';
import { createInstrumentations } from '../src/instrumentations';

function recordingSpan(attributes: Record<string, unknown> = {}): Span & { attributes: Record<string, unknown> } {
  return { attributes, setAttribute: (key: string, value: unknown) => ((attributes[key] = value), undefined) } as unknown as Span & {
    attributes: Record<string, unknown>;
  };
}

describe('amqplibJobName', () => {
  it('is the queue consumed from', () => {
    expect(amqplibJobName('orders.created', { fields: { exchange: 'orders', routingKey: 'created' } })).toBe('orders.created');
  });

  it('is the exchange for a queue the server named (one per consumer), else the routing key', () => {
    expect(amqplibJobName('amq.gen-JzTY20BRgKO-HjmUJj0wLg', { fields: { exchange: 'events', routingKey: 'user.signup' } })).toBe('events');
    expect(amqplibJobName('', { fields: { exchange: '', routingKey: 'tasks' } })).toBe('tasks');
  });
});

describe('amqplibPublishHook', () => {
  it('sets messaging.system when instrumentation-amqplib did not see the connection open, and keeps the server product otherwise', () => {
    const bare = recordingSpan();
    amqplibPublishHook(bare);
    expect(bare.attributes['messaging.system']).toBe('rabbitmq');
    const known = recordingSpan({ 'messaging.system': 'lavinmq' });
    amqplibPublishHook(known);
    expect(known.attributes['messaging.system']).toBe('lavinmq');
  });
});

describe('beside instrumentation-amqplib', () => {
  it("is installed after request-budget's own instance", () => {
    const instrumentations = createInstrumentations(['amqplib']);
    const names = instrumentations.map((i) => i.instrumentationName);
    expect(names.indexOf('@request-budget/amqplib-jobs')).toBeGreaterThan(names.indexOf('@opentelemetry/instrumentation-amqplib'));
    for (const instrumentation of instrumentations) instrumentation.disable();
  });

  it("comes with an app's own instance, after it, and gives it the publish hook", () => {
    const amqplib = new AmqplibInstrumentation({ enabled: false });
    const returned = addRequestBudgetHooks([amqplib]);
    expect(returned[0]).toBe(amqplib);
    expect(returned.map((i) => i.instrumentationName)).toContain('@request-budget/amqplib-jobs');
    const span = recordingSpan();
    amqplib.getConfig().publishHook!(span, {} as never);
    expect(span.attributes['messaging.system']).toBe('rabbitmq');
    for (const instrumentation of returned) instrumentation.disable();
  });
});
