/**
 * Bad input against the running collector (a child process): garbage, truncated, oversized and
 * mis-declared payloads are answered 400/413/415 with a google.rpc.Status message, spans with
 * impossible ids are refused one by one (partial success), a wrong token gets 401, random bytes
 * for two seconds get only 200 or 400 — and the service stays up and keeps forwarding.
 */
import { randomBytes, randomInt } from 'node:crypto';
import zlib from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startOtlpReceiver, type OtlpReceiver } from '../../test/support/otlp-receiver';
import { ExportTraceServiceResponse } from '../../test/support/otlp-schema';
import { otlpRoot } from '../src/otlp/otlp-schema';
import { COLLECTOR_BUDGETS, startCollectorProcess, type CollectorProcess } from './support/collector-process';
import { ordersTrace, postOtlp, toOtlpJson, toOtlpProtobuf } from './support/synthetic-trace';

const TOKEN = 's3cret-token';
const LIMIT = 64 * 1024;
const RpcStatus = otlpRoot.lookupType('google.rpc.Status');
let receiver: OtlpReceiver;
let collector: CollectorProcess;

beforeAll(async () => {
  receiver = await startOtlpReceiver();
  collector = await startCollectorProcess(
    ['--budgets', COLLECTOR_BUDGETS, '--otlp-endpoint', receiver.url, '--max-body-size', '64KiB', '--grace-period', '100ms'],
    {
      REQUEST_BUDGET_COLLECTOR_AUTH_TOKEN: TOKEN,
    },
  );
});
afterAll(async () => {
  await collector?.stop();
  await receiver?.close();
});

const auth = { authorization: `Bearer ${TOKEN}` };
const protobufPost = (body: Uint8Array, headers: Record<string, string> = {}) =>
  postOtlp(collector.tracesUrl, body, 'application/x-protobuf', { ...auth, ...headers });
const jsonPost = (body: string | Uint8Array, headers: Record<string, string> = {}) =>
  postOtlp(collector.tracesUrl, body, 'application/json', { ...auth, ...headers });

/** The google.rpc.Status of an error answer, in the answer's encoding. */
async function statusOf(response: Response): Promise<{ code: number; message: string }> {
  const body = new Uint8Array(await response.arrayBuffer());
  if (response.headers.get('content-type') === 'application/json') return JSON.parse(Buffer.from(body).toString()) as { code: number; message: string };
  return RpcStatus.toObject(RpcStatus.decode(body)) as { code: number; message: string };
}

async function expectStillServing(): Promise<void> {
  expect(collector.child.exitCode).toBeNull();
  expect((await fetch(`${collector.url}/healthz`)).status).toBe(200);
  const trace = ordersTrace();
  expect((await protobufPost(toOtlpProtobuf(trace))).status).toBe(200);
  await receiver.waitFor((all) => all.some((span) => span.spanId === trace.rootId && span.attributes['budget.rule'] === 'GET /orders/:id'));
}

describe('payloads that cannot be used', () => {
  it('answers garbage, truncated and mis-shaped bodies with 400 and what is wrong', async () => {
    const garbage = await protobufPost(Buffer.from('this is not protobuf at all, not even close'));
    expect(garbage.status).toBe(400);
    expect(garbage.headers.get('content-type')).toBe('application/x-protobuf');
    expect(await statusOf(garbage)).toEqual({ code: 3, message: expect.stringMatching(/^protobuf ExportTraceServiceRequest did not decode: /) });

    const valid = toOtlpProtobuf(ordersTrace());
    const truncated = await protobufPost(valid.subarray(0, Math.floor(valid.length / 2)));
    expect(truncated.status).toBe(400);
    // The first ResourceSpans says how long it is; half the body is not that long.
    expect((await statusOf(truncated)).message).toMatch(
      /^protobuf ExportTraceServiceRequest did not decode: length (\d+) at offset \d+ runs past the end of its message \((\d+)\)$/,
    );
    expect((await statusOf(await protobufPost(valid.subarray(0, Math.floor(valid.length / 2))))).message).toContain(
      `runs past the end of its message (${Math.floor(valid.length / 2)})`,
    );

    const notJson = await jsonPost('{"resourceSpans": [');
    expect(notJson.status).toBe(400);
    expect(notJson.headers.get('content-type')).toBe('application/json');
    expect((await statusOf(notJson)).message).toMatch(/^body is not JSON: /);

    const json = toOtlpJson(ordersTrace()) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
    json.resourceSpans[0]!.scopeSpans[0]!.spans[1]!.startTimeUnixNano = 'yesterday';
    const misShaped = await jsonPost(JSON.stringify(json));
    expect(misShaped.status).toBe(400);
    expect(await statusOf(misShaped)).toEqual({
      code: 3,
      message:
        'ExportTraceServiceRequest.resourceSpans[0].scopeSpans[0].spans[1].startTimeUnixNano: expected an integer (number or decimal string), got "yesterday"',
    });

    const badGzip = await protobufPost(Buffer.from('not gzip'), { 'content-encoding': 'gzip' });
    expect(badGzip.status).toBe(400);
    expect((await statusOf(badGzip)).message).toMatch(/^gzip body did not inflate: /);
    await expectStillServing();
  });

  it('answers bodies over the limit with 413, compressed or once inflated', async () => {
    const oversized = await protobufPost(randomBytes(LIMIT + 1));
    expect(oversized.status).toBe(413);
    expect((await statusOf(oversized)).message).toBe(`body of ${LIMIT + 1} bytes is larger than the limit of ${LIMIT} bytes`);

    const bomb = zlib.gzipSync(Buffer.alloc(LIMIT * 20, 0x41));
    expect(bomb.length).toBeLessThan(LIMIT);
    const inflated = await jsonPost(bomb, { 'content-encoding': 'gzip' });
    expect(inflated.status).toBe(413);
    expect((await statusOf(inflated)).message).toBe(`inflated body larger than the limit of ${LIMIT} bytes`);

    // Without a Content-Length (chunked), the limit is applied while reading.
    const chunked = await fetch(collector.tracesUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-protobuf', ...auth },
      body: new ReadableStream({
        start(controller) {
          for (let i = 0; i < 3; i += 1) controller.enqueue(new Uint8Array(LIMIT / 2));
          controller.close();
        },
      }),
      duplex: 'half',
      signal: AbortSignal.timeout(10_000),
    } as RequestInit);
    expect(chunked.status).toBe(413);
    expect((await statusOf(chunked)).message).toBe(`body larger than the limit of ${LIMIT} bytes`);
    await expectStillServing();
  });

  it('answers what is not OTLP/HTTP traces with 415, 405 or 404', async () => {
    const text = await postOtlp(collector.tracesUrl, 'hello', 'text/plain', auth);
    expect(text.status).toBe(415);
    expect((await statusOf(text)).message).toBe('unsupported Content-Type "text/plain"; use application/x-protobuf or application/json');
    const brotli = await protobufPost(Buffer.from('x'), { 'content-encoding': 'br' });
    expect(brotli.status).toBe(415);
    expect((await statusOf(brotli)).message).toBe('unsupported Content-Encoding "br"; use gzip or none');
    const get = await fetch(collector.tracesUrl);
    expect([get.status, get.headers.get('allow'), await get.text()]).toEqual([405, 'POST', 'GET not allowed on /v1/traces; use POST\n']);
    const elsewhere = await fetch(`${collector.url}/v1/logs`, { method: 'POST', body: 'x' });
    expect(elsewhere.status).toBe(404);
  });

  it('refuses a missing or wrong bearer token with 401', async () => {
    const missing = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf');
    expect([missing.status, missing.headers.get('www-authenticate')]).toEqual([401, 'Bearer']);
    expect((await statusOf(missing)).message).toBe('missing or wrong bearer token (Authorization: Bearer …)');
    const wrong = await postOtlp(collector.tracesUrl, toOtlpProtobuf(ordersTrace()), 'application/x-protobuf', { authorization: 'Bearer nope' });
    expect(wrong.status).toBe(401);
    // Health and metrics stay open for probes and scrapers.
    expect((await fetch(`${collector.url}/readyz`)).status).toBe(200);
    expect((await fetch(`${collector.url}/metrics`)).status).toBe(200);
  });

  it('refuses spans with impossible ids one by one, as a partial success', async () => {
    const trace = ordersTrace();
    const json = toOtlpJson(trace) as { resourceSpans: { scopeSpans: { spans: Record<string, unknown>[] }[] }[] };
    const spans = json.resourceSpans[0]!.scopeSpans[0]!.spans;
    spans[1]!.spanId = '0000000000000000';
    spans[2]!.traceId = 'abcd';
    const response = await jsonPost(JSON.stringify(json));
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({
      partialSuccess: { rejectedSpans: '2', errorMessage: '2 span(s) refused: span "connect": invalid span id (8 bytes; 8 non-zero bytes expected)' },
    });
    const asProtobuf = toOtlpJson(ordersTrace()) as typeof json;
    asProtobuf.resourceSpans[0]!.scopeSpans[0]!.spans[0]!.traceId = '00'.repeat(16);
    const { ExportTraceServiceRequest } = await import('../../test/support/otlp-schema');
    for (const span of asProtobuf.resourceSpans.flatMap((rs) => rs.scopeSpans.flatMap((ss) => ss.spans))) {
      for (const key of ['traceId', 'spanId', 'parentSpanId']) if (typeof span[key] === 'string') span[key] = Buffer.from(span[key] as string, 'hex');
    }
    const protobufResponse = await protobufPost(ExportTraceServiceRequest.encode(ExportTraceServiceRequest.fromObject(asProtobuf)).finish());
    expect(protobufResponse.status).toBe(200);
    expect(
      ExportTraceServiceResponse.toObject(ExportTraceServiceResponse.decode(new Uint8Array(await protobufResponse.arrayBuffer())), { longs: Number }),
    ).toEqual({
      partialSuccess: {
        rejectedSpans: 1,
        errorMessage: '1 span(s) refused: span "GET /orders/{order_id}": invalid trace id (16 bytes; 16 non-zero bytes expected)',
      },
    });
    expect(await collector.metric('request_budget_collector_dropped_spans_total{reason="invalid",downstream="none"}')).toBe(3);
  });
});

describe('fuzzing the decoder', () => {
  it('answers 2 s of random and mutated payloads with 200 or 400 only, and stays up', async () => {
    const valid = Buffer.from(toOtlpProtobuf(ordersTrace()));
    const validJson = Buffer.from(JSON.stringify(toOtlpJson(ordersTrace())));
    const statuses = new Map<number, number>();
    const deadline = Date.now() + 2000;
    let sent = 0;
    const worker = async () => {
      while (Date.now() < deadline) {
        const json = randomInt(2) === 1;
        let body: Buffer;
        switch (randomInt(3)) {
          case 0:
            body = randomBytes(randomInt(0, 2048));
            break;
          case 1: {
            // A valid payload with a few bytes changed: deep in the decoder, not at its door.
            body = Buffer.from(json ? validJson : valid);
            for (let i = randomInt(1, 6); i > 0; i -= 1) body[randomInt(body.length)] = randomInt(256);
            break;
          }
          default:
            body = (json ? validJson : valid).subarray(0, randomInt(json ? validJson.length : valid.length));
        }
        const response = await (json ? jsonPost(body) : protobufPost(body));
        await response.arrayBuffer();
        statuses.set(response.status, (statuses.get(response.status) ?? 0) + 1);
        sent += 1;
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    expect(sent).toBeGreaterThan(50);
    expect([...statuses.keys()].filter((status) => status !== 200 && status !== 400)).toEqual([]);
    expect(statuses.get(400)).toBeGreaterThan(0);
    expect(await collector.metric('request_budget_collector_internal_errors_total')).toBe(0);
    expect(collector.stderrLines.filter((line) => /unexpected/.test(line))).toEqual([]);
    await expectStillServing();
  });
});
