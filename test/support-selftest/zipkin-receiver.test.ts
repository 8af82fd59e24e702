import zlib from 'node:zlib';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SpanKind, context, trace } from '@opentelemetry/api';
import { ZipkinExporter } from '@opentelemetry/exporter-zipkin';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import {
  ZIPKIN_CONTRACT_PATH,
  loadZipkinContract,
  startZipkinReceiver,
  swaggerSchemaToJsonSchema,
  type ZipkinReceiver,
  type ZipkinSpan,
} from '../support/zipkin-receiver';

type Definitions = Record<string, Record<string, unknown>>;

const contract = loadZipkinContract();
const swaggerDefinitions = contract.document.definitions as Definitions;
const jsonDefinitions = contract.bodySchema.definitions as Definitions;

/** A span every rule of the contract accepts, with every optional field filled in. */
function validSpan(): ZipkinSpan {
  return {
    traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
    id: '00f067aa0ba902b7',
    parentId: '6b221d5bc9e6496c',
    name: 'get /queries/:n',
    kind: 'SERVER',
    timestamp: 1556604172355737,
    duration: 1431,
    debug: false,
    shared: false,
    localEndpoint: { serviceName: 'cost-app', ipv4: '192.168.99.1', port: 3306 },
    remoteEndpoint: { ipv6: '2001:db8::c001', port: 58648 },
    annotations: [{ timestamp: 1556604172356000, value: 'budget.breach' }],
    tags: { 'budget.breached': 'true', 'cost.db.queries': '12' },
  };
}

function post(url: string, body: string | Uint8Array, headers: Record<string, string> = { 'content-type': 'application/json' }, method = 'POST') {
  return fetch(url, { method, body: method === 'GET' ? undefined : body, headers, signal: AbortSignal.timeout(5000) });
}

let receiver: ZipkinReceiver;
beforeEach(async () => {
  receiver = await startZipkinReceiver();
});
afterEach(() => receiver.close());

describe('the contract as read from zipkin2-api.yaml', () => {
  it('is the shared Swagger 2.0 file, and POST /spans takes a ListOfSpans at /api/v2/spans', () => {
    expect(ZIPKIN_CONTRACT_PATH.endsWith('/test/contracts/zipkin2-api.yaml')).toBe(true);
    expect(contract.spansPath).toBe('/api/v2/spans');
    expect(receiver.spansUrl).toBe(`${receiver.url}/api/v2/spans`);
    expect(contract.consumes).toEqual(['application/json', 'application/x-protobuf']);
    expect(contract.bodyDefinition).toBe('ListOfSpans');
    expect(contract.bodySchema.$ref).toBe('#/definitions/ListOfSpans');
  });

  it('requires traceId and id of a Span, timestamp and value of an Annotation; tags are string to string', () => {
    expect(swaggerDefinitions.Span!.required).toEqual(['traceId', 'id']);
    expect(swaggerDefinitions.Annotation!.required).toEqual(['timestamp', 'value']);
    expect(swaggerDefinitions.Tags!.additionalProperties).toEqual({ type: 'string' });
  });

  it('keeps every constraint of a Span and drops only what JSON Schema cannot check', () => {
    const span = jsonDefinitions.Span!;
    const properties = span.properties as Definitions;
    const strip = ({ description: _description, ...rest }: Record<string, unknown>) => rest;
    expect(strip(properties.traceId!)).toEqual({ type: 'string', maxLength: 32, minLength: 16, pattern: '[a-f0-9]{16,32}' });
    expect(strip(properties.id!)).toEqual({ type: 'string', pattern: '[a-f0-9]{16}', maxLength: 16, minLength: 16 });
    expect(strip(properties.parentId!)).toEqual({ type: 'string', pattern: '[a-f0-9]{16}', maxLength: 16, minLength: 16 });
    expect(strip(properties.kind!)).toEqual({ type: 'string', enum: ['CLIENT', 'SERVER', 'PRODUCER', 'CONSUMER'] });
    expect(strip(properties.timestamp!)).toEqual({ type: 'integer', format: 'int64' });
    expect(strip(properties.duration!)).toEqual({ type: 'integer', format: 'int64', minimum: 1 });
    expect(strip(properties.annotations!)).toEqual({ type: 'array', uniqueItems: true, items: { $ref: '#/definitions/Annotation' } });
    // Beside $ref, JSON Reference ignores the description.
    expect(properties.localEndpoint).toEqual({ $ref: '#/definitions/Endpoint' });
    expect(properties.tags).toEqual({ $ref: '#/definitions/Tags' });
    expect(span.required).toEqual(['traceId', 'id']);
    expect('example' in span).toBe(false);
    expect('example' in swaggerDefinitions.Span!).toBe(true);
  });

  it('converts Swagger-only keywords by meaning, and refuses keywords it does not know', () => {
    expect(
      swaggerSchemaToJsonSchema(
        {
          type: 'object',
          'x-internal': true,
          discriminator: 'kind',
          example: { kind: 'a' },
          properties: {
            example: { type: 'number', maximum: 10, exclusiveMaximum: true, minimum: 0, exclusiveMinimum: false },
            kind: { type: 'string', xml: { attribute: true } },
          },
        },
        'test',
      ),
    ).toEqual({
      type: 'object',
      properties: { example: { type: 'number', exclusiveMaximum: 10, minimum: 0 }, kind: { type: 'string' } },
    });
    expect(() => swaggerSchemaToJsonSchema({ type: 'string', oneOf: [] }, 'test')).toThrow(
      'test: "oneOf" is not a Swagger 2.0 schema keyword this converter knows',
    );
    expect(() => swaggerSchemaToJsonSchema({ $ref: 'other.yaml#/X' }, 'test')).toThrow('test: only local #/definitions refs are supported, got other.yaml#/X');
  });
});

describe('valid payloads', () => {
  it('accepts the contract’s own Span example, a span with every field, and an empty list, with 202', async () => {
    const example = swaggerDefinitions.Span!.example as ZipkinSpan;
    for (const payload of [[example], [validSpan()], []]) {
      const res = await post(receiver.spansUrl, JSON.stringify(payload));
      expect(res.status).toBe(202);
      expect(await res.text()).toBe('');
    }
    expect(receiver.spans).toEqual([example, validSpan()]);
    expect(receiver.rejections).toEqual([]);
  });

  it('accepts a gzipped payload and a charset parameter', async () => {
    const res = await post(receiver.spansUrl, zlib.gzipSync(JSON.stringify([validSpan()])), {
      'content-type': 'application/json; charset=utf-8',
      'content-encoding': 'gzip',
    });
    expect(res.status).toBe(202);
    expect(receiver.spans).toEqual([validSpan()]);
  });

  it('accepts what the real @opentelemetry/exporter-zipkin sends, and shows how it renders attributes and events', async () => {
    const provider = new TracerProvider({
      resource: resourceFromAttributes({ 'service.name': 'selftest' }),
      spanProcessors: [new SimpleSpanProcessor({ exporter: new ZipkinExporter({ url: receiver.spansUrl }) })],
    });
    const ids: Record<string, string> = {};
    try {
      const tracer = provider.getTracer('selftest');
      const server = tracer.startSpan('GET /users/:id', {
        kind: SpanKind.SERVER,
        attributes: { 'budget.breached': true, 'budget.violations': ['db.queries 41>10', 'db.rows 9>1'], 'cost.db.queries': 41, 'cost.db.time_ms': 1.5 },
      });
      server.addEvent('budget.breach', { metric: 'db.queries', value: 41, limit: 10, severity: 'critical' });
      tracer.startSpan('internal', {}, trace.setSpan(context.active(), server)).end();
      server.end();
      ids.trace = server.spanContext().traceId;
      ids.server = server.spanContext().spanId;
      await provider.forceFlush();
    } finally {
      await provider.shutdown();
    }
    const spans = await receiver.waitFor((all) => all.length === 2);
    expect(receiver.rejections).toEqual([]);
    const server = spans.find((s) => s.id === ids.server)!;
    expect(server).toEqual({
      traceId: ids.trace,
      name: 'GET /users/:id',
      id: ids.server,
      kind: 'SERVER',
      timestamp: expect.any(Number),
      duration: expect.any(Number),
      localEndpoint: { serviceName: 'selftest' },
      tags: {
        'budget.breached': 'true',
        'budget.violations': 'db.queries 41>10,db.rows 9>1',
        'cost.db.queries': '41',
        'cost.db.time_ms': '1.5',
        'service.name': 'selftest',
      },
      // Zipkin annotations carry only a value: the event's attributes are not exported.
      annotations: [{ timestamp: expect.any(Number), value: 'budget.breach' }],
    });
    // An INTERNAL span has no Zipkin kind; the field is left out.
    const internal = spans.find((s) => s.id !== ids.server)!;
    expect(internal.parentId).toBe(ids.server);
    expect('kind' in internal).toBe(false);
    expect('annotations' in internal).toBe(false);
  });
});

describe('payloads that break the contract are refused with 400, naming the field', () => {
  const cases: { what: string; change: (span: Record<string, unknown>) => void; message: string }[] = [
    {
      what: 'traceId "xyz": too short and not hex',
      change: (s) => (s.traceId = 'xyz'),
      message: 'invalid ListOfSpans: /0/traceId must NOT have fewer than 16 characters; /0/traceId must match pattern "[a-f0-9]{16,32}"',
    },
    {
      what: 'traceId of 16 characters, not hex',
      change: (s) => (s.traceId = 'xyzxyzxyzxyzxyzx'),
      message: 'invalid ListOfSpans: /0/traceId must match pattern "[a-f0-9]{16,32}"',
    },
    {
      what: 'traceId in upper-case hex',
      change: (s) => (s.traceId = '4BF92F3577B34DA6A3CE929D0E0E4736'),
      message: 'invalid ListOfSpans: /0/traceId must match pattern "[a-f0-9]{16,32}"',
    },
    {
      what: 'traceId of 33 characters',
      change: (s) => (s.traceId = '4bf92f3577b34da6a3ce929d0e0e47360'),
      message: 'invalid ListOfSpans: /0/traceId must NOT have more than 32 characters',
    },
    {
      what: 'id of 15 characters',
      change: (s) => (s.id = '00f067aa0ba902b'),
      message: 'invalid ListOfSpans: /0/id must NOT have fewer than 16 characters; /0/id must match pattern "[a-f0-9]{16}"',
    },
    {
      what: 'id of 17 characters',
      change: (s) => (s.id = '00f067aa0ba902b77'),
      message: 'invalid ListOfSpans: /0/id must NOT have more than 16 characters',
    },
    {
      what: 'parentId not hex',
      change: (s) => (s.parentId = 'parent-span-id!!'),
      message: 'invalid ListOfSpans: /0/parentId must match pattern "[a-f0-9]{16}"',
    },
    {
      what: 'kind "WRONG"',
      change: (s) => (s.kind = 'WRONG'),
      message: 'invalid ListOfSpans: /0/kind must be equal to one of the allowed values: CLIENT, SERVER, PRODUCER, CONSUMER',
    },
    {
      what: 'kind "INTERNAL" (OpenTelemetry has it, Zipkin does not)',
      change: (s) => (s.kind = 'INTERNAL'),
      message: 'invalid ListOfSpans: /0/kind must be equal to one of the allowed values: CLIENT, SERVER, PRODUCER, CONSUMER',
    },
    {
      what: 'a numeric tag value',
      change: (s) => (s.tags = { 'cost.db.queries': 12 }),
      message: 'invalid ListOfSpans: /0/tags/cost.db.queries must be string',
    },
    {
      what: 'a boolean tag value',
      change: (s) => (s.tags = { 'budget.breached': true }),
      message: 'invalid ListOfSpans: /0/tags/budget.breached must be string',
    },
    {
      what: 'a list as tag value',
      change: (s) => (s.tags = { 'budget.violations': ['db.queries 12>10'] }),
      message: 'invalid ListOfSpans: /0/tags/budget.violations must be string',
    },
    {
      what: 'no traceId',
      change: (s) => delete s.traceId,
      message: "invalid ListOfSpans: /0 must have required property 'traceId'",
    },
    {
      what: 'no id',
      change: (s) => delete s.id,
      message: "invalid ListOfSpans: /0 must have required property 'id'",
    },
    {
      what: 'neither traceId nor id',
      change: (s) => {
        delete s.traceId;
        delete s.id;
      },
      message: "invalid ListOfSpans: /0 must have required property 'traceId'; /0 must have required property 'id'",
    },
    {
      what: 'a fractional timestamp',
      change: (s) => (s.timestamp = 1556604172355737.5),
      message: 'invalid ListOfSpans: /0/timestamp must be integer; /0/timestamp must match format "int64"',
    },
    {
      what: 'a zero duration',
      change: (s) => (s.duration = 0),
      message: 'invalid ListOfSpans: /0/duration must be >= 1',
    },
    {
      what: 'an annotation without value',
      change: (s) => (s.annotations = [{ timestamp: 1556604172356000 }]),
      message: "invalid ListOfSpans: /0/annotations/0 must have required property 'value'",
    },
    {
      what: 'the same annotation twice',
      change: (s) =>
        (s.annotations = [
          { timestamp: 1, value: 'budget.breach' },
          { timestamp: 1, value: 'budget.breach' },
        ]),
      message: 'invalid ListOfSpans: /0/annotations must NOT have duplicate items (items ## 0 and 1 are identical)',
    },
    {
      what: 'an endpoint with a bad ipv4 and a string port',
      change: (s) => (s.localEndpoint = { serviceName: 'cost-app', ipv4: '999.1.1.1', port: '80' }),
      message: 'invalid ListOfSpans: /0/localEndpoint/ipv4 must match format "ipv4"; /0/localEndpoint/port must be integer',
    },
    {
      what: 'a name that is not a string',
      change: (s) => (s.name = 42),
      message: 'invalid ListOfSpans: /0/name must be string',
    },
  ];

  it.each(cases)('$what', async ({ change, message }) => {
    const span = validSpan() as unknown as Record<string, unknown>;
    change(span);
    const body = JSON.stringify([span]);
    const res = await post(receiver.spansUrl, body);
    expect(res.status).toBe(400);
    expect(await res.text()).toBe(message);
    expect(receiver.rejections).toEqual([{ status: 400, message, body }]);
    expect(receiver.spans).toEqual([]);
  });

  it('names the index of the bad span, and accepts none of a payload that has one', async () => {
    const bad = { ...validSpan(), id: 'xyz' };
    const body = JSON.stringify([validSpan(), bad]);
    const res = await post(receiver.spansUrl, body);
    expect(res.status).toBe(400);
    expect(await res.text()).toBe('invalid ListOfSpans: /1/id must NOT have fewer than 16 characters; /1/id must match pattern "[a-f0-9]{16}"');
    expect(receiver.spans).toEqual([]);
  });

  it('refuses a body that is not a list of spans', async () => {
    const res = await post(receiver.spansUrl, JSON.stringify(validSpan()));
    expect(res.status).toBe(400);
    expect(await res.text()).toBe('invalid ListOfSpans: (root) must be array');
  });
});

describe('HTTP handling', () => {
  it('refuses what is not a JSON upload to POST /api/v2/spans, records why, and keeps serving', async () => {
    const span = JSON.stringify([validSpan()]);
    const attempts = [
      {
        res: await post(receiver.spansUrl, 'not json'),
        status: 400,
        message: `body is not JSON: Unexpected token 'o', "not json" is not valid JSON`,
        body: 'not json',
      },
      { res: await post(receiver.spansUrl, ''), status: 400, message: 'the body is required: a ListOfSpans', body: '' },
      {
        res: await post(receiver.spansUrl, span, { 'content-type': 'application/x-protobuf' }),
        status: 415,
        message: 'Content-Type "application/x-protobuf" is in the contract but this receiver decodes only application/json',
        body: '',
      },
      {
        res: await post(receiver.spansUrl, span, { 'content-type': 'text/plain' }),
        status: 415,
        message: 'Content-Type "text/plain" is not one the contract consumes',
        body: '',
      },
      {
        res: await post(receiver.spansUrl, span, { 'content-type': 'application/json', 'content-encoding': 'br' }),
        status: 415,
        message: 'unsupported Content-Encoding "br"; use gzip or none',
        body: '',
      },
      {
        res: await post(receiver.spansUrl, span, { 'content-type': 'application/json', 'content-encoding': 'gzip' }),
        status: 400,
        message: 'gzip body did not inflate: incorrect header check',
        body: '',
      },
      {
        res: await post(`${receiver.url}/api/v1/spans`, span),
        status: 404,
        message: 'no such endpoint POST /api/v1/spans; spans go to POST /api/v2/spans',
        body: '',
      },
      { res: await post(receiver.spansUrl, '', {}, 'GET'), status: 405, message: 'GET not allowed; use POST', body: '' },
    ];
    for (const { res, status, message } of attempts) {
      expect([res.status, await res.text()]).toEqual([status, message]);
    }
    expect(receiver.rejections).toEqual(attempts.map(({ status, message, body }) => ({ status, message, body })));

    const ok = await post(receiver.spansUrl, span);
    expect(ok.status).toBe(202);
    expect(receiver.spans).toEqual([validSpan()]);
  });

  it('waitFor resolves on arrival, and on timeout says what was received and refused', async () => {
    const waiting = receiver.waitFor((spans) => spans.some((s) => s.kind === 'SERVER'), { timeoutMs: 5000 });
    await post(receiver.spansUrl, JSON.stringify([validSpan()]));
    expect(await waiting).toEqual([validSpan()]);

    await post(receiver.spansUrl, JSON.stringify([{ ...validSpan(), kind: 'WRONG' }]));
    await expect(receiver.waitFor(() => false, { timeoutMs: 100 })).rejects.toThrow(
      'waitFor timed out after 100 ms; received 1 span(s), 1 rejection(s):\n' +
        '  SERVER get /queries/:n trace=4bf92f3577b34da6a3ce929d0e0e4736 id=00f067aa0ba902b7 parent=6b221d5bc9e6496c\n' +
        'rejections:\n' +
        '  400 invalid ListOfSpans: /0/kind must be equal to one of the allowed values: CLIENT, SERVER, PRODUCER, CONSUMER',
    );
  });
});
