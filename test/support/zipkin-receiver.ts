/**
 * An in-process Zipkin v2 collector for tests: POST /api/v2/spans in JSON (optionally gzipped).
 * Zipkin itself cannot run here, so every payload is validated against the official Zipkin v2
 * API contract (Swagger 2.0, test/contracts/zipkin2-api.yaml) and refused with 400 naming
 * the field when it breaks it, the way a strict collector would.
 */
import type http from 'node:http';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject, type ValidateFunction } from 'ajv';
import { parse as parseYaml } from 'yaml';
import { HttpError } from './http-error';
import { repoRoot } from './paths';
import { startReceiverServer } from './receiver-server';
import { inflateBody, readBody } from './request-body';
import { waitersFor, type WaitForOptions } from './wait-for';

export type { WaitForOptions } from './wait-for';

/** The contract file, shared by every checkout of the project (outside the repo). */
export const ZIPKIN_CONTRACT_PATH: string = path.resolve(repoRoot, 'test', 'contracts', 'zipkin2-api.yaml');

export interface ZipkinEndpoint {
  serviceName?: string;
  ipv4?: string;
  ipv6?: string;
  port?: number;
}

export interface ZipkinAnnotation {
  timestamp: number;
  value: string;
}

/** A span as the contract's `Span` definition describes it. */
export interface ZipkinSpan {
  traceId: string;
  id: string;
  parentId?: string;
  name?: string;
  kind?: 'CLIENT' | 'SERVER' | 'PRODUCER' | 'CONSUMER';
  timestamp?: number;
  duration?: number;
  debug?: boolean;
  shared?: boolean;
  localEndpoint?: ZipkinEndpoint;
  remoteEndpoint?: ZipkinEndpoint;
  annotations?: ZipkinAnnotation[];
  tags?: Record<string, string>;
}

/** A request the receiver refused: its status, why, and the (inflated) body it carried. */
export interface ZipkinRejection {
  status: number;
  message: string;
  body: string;
}

/** A running receiver; see {@link startZipkinReceiver}. */
export interface ZipkinReceiver {
  /** Base URL, e.g. `http://127.0.0.1:41234` (no trailing slash). */
  readonly url: string;
  /** `url + '/api/v2/spans'`, ready for OTEL_EXPORTER_ZIPKIN_ENDPOINT. */
  readonly spansUrl: string;
  /** Every span of every accepted payload, in arrival order. */
  readonly spans: readonly ZipkinSpan[];
  /** Every refused request, in order. */
  readonly rejections: readonly ZipkinRejection[];
  /**
   * Resolve with a snapshot of the spans once `predicate(spans)` is true (checked now and after
   * every accepted payload). A throwing predicate counts as "not yet". Rejects on timeout with
   * what was received and refused.
   */
  waitFor(predicate: (spans: readonly ZipkinSpan[]) => boolean, options?: WaitForOptions): Promise<ZipkinSpan[]>;
  /** Stop listening and drop open connections; pending waitFor calls reject. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// The contract: Swagger 2.0 schema objects turned into a JSON Schema (draft-07) ajv compiles.

type SchemaObject = Record<string, unknown>;

/** What the receiver needs from the Swagger document. */
export interface ZipkinContract {
  /** The parsed Swagger document, as written. */
  readonly document: SchemaObject;
  /** `basePath + '/spans'`: where POST /spans lives. */
  readonly spansPath: string;
  /** Media types the POST /spans operation consumes. */
  readonly consumes: readonly string[];
  /** The POST /spans body schema with every definition, as draft-07 JSON Schema. */
  readonly bodySchema: SchemaObject;
  /** The name of the body's top definition (`ListOfSpans`). */
  readonly bodyDefinition: string;
}

// Swagger 2.0 schema-object keywords that validate or annotate, with draft-07 meaning unchanged.
const PLAIN_KEYWORDS = new Set([
  'type',
  'format',
  'title',
  'description',
  'default',
  'multipleOf',
  'maximum',
  'minimum',
  'maxLength',
  'minLength',
  'pattern',
  'maxItems',
  'minItems',
  'uniqueItems',
  'maxProperties',
  'minProperties',
  'required',
  'enum',
  'readOnly',
]);
// Swagger-only keywords that constrain nothing JSON Schema can check: dropped.
const SWAGGER_ONLY_KEYWORDS = new Set(['discriminator', 'xml', 'externalDocs', 'example']);

const isObject = (value: unknown): value is SchemaObject => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Converts one Swagger 2.0 schema object. Keywords are handled by meaning, so a property that
 * happens to be named `example` is kept; anything unknown throws, so a contract change that
 * this converter does not understand fails loudly instead of validating less.
 */
export function swaggerSchemaToJsonSchema(schema: unknown, where: string): SchemaObject {
  if (!isObject(schema)) throw new Error(`${where}: a schema must be an object, got ${JSON.stringify(schema)}`);
  // JSON Reference: members beside $ref are ignored (Swagger 2.0 follows that rule).
  if (typeof schema.$ref === 'string') {
    if (!schema.$ref.startsWith('#/definitions/')) throw new Error(`${where}: only local #/definitions refs are supported, got ${schema.$ref}`);
    return { $ref: schema.$ref };
  }
  const out: SchemaObject = {};
  for (const [keyword, value] of Object.entries(schema)) {
    if (keyword.startsWith('x-') || SWAGGER_ONLY_KEYWORDS.has(keyword)) continue;
    if (keyword === 'type' && value === 'file') throw new Error(`${where}: type "file" is not a JSON body type`);
    if (PLAIN_KEYWORDS.has(keyword)) out[keyword] = value;
    else if (keyword === 'properties') {
      if (!isObject(value)) throw new Error(`${where}.properties must be an object`);
      out.properties = Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, swaggerSchemaToJsonSchema(sub, `${where}.properties.${name}`)]));
    } else if (keyword === 'items') out.items = swaggerSchemaToJsonSchema(value, `${where}.items`);
    else if (keyword === 'additionalProperties') {
      out.additionalProperties = typeof value === 'boolean' ? value : swaggerSchemaToJsonSchema(value, `${where}.additionalProperties`);
    } else if (keyword === 'allOf') {
      if (!Array.isArray(value)) throw new Error(`${where}.allOf must be a list`);
      out.allOf = value.map((sub, i) => swaggerSchemaToJsonSchema(sub, `${where}.allOf[${i}]`));
    } else if (keyword !== 'exclusiveMaximum' && keyword !== 'exclusiveMinimum') {
      throw new Error(`${where}: "${keyword}" is not a Swagger 2.0 schema keyword this converter knows`);
    }
  }
  // Swagger 2.0 (draft-04) writes exclusive bounds as booleans beside maximum/minimum.
  for (const [exclusive, bound] of [
    ['exclusiveMaximum', 'maximum'],
    ['exclusiveMinimum', 'minimum'],
  ] as const) {
    if (schema[exclusive] === undefined) continue;
    if (typeof schema[exclusive] !== 'boolean' || typeof schema[bound] !== 'number')
      throw new Error(`${where}: ${exclusive} needs a boolean and a numeric ${bound}`);
    if (schema[exclusive]) {
      out[exclusive] = schema[bound];
      delete out[bound];
    }
  }
  return out;
}

/** Reads the contract and builds the POST /spans body schema. */
export function loadZipkinContract(file: string = ZIPKIN_CONTRACT_PATH): ZipkinContract {
  const document = parseYaml(readFileSync(file, 'utf8')) as unknown;
  if (!isObject(document) || document.swagger !== '2.0') throw new Error(`${file} is not a Swagger 2.0 document`);
  const { definitions, paths } = document;
  if (!isObject(definitions) || !isObject(paths)) throw new Error(`${file} has no definitions or paths`);
  const post = isObject(paths['/spans']) ? paths['/spans'].post : undefined;
  if (!isObject(post) || !Array.isArray(post.parameters)) throw new Error(`${file} has no POST /spans operation`);
  const bodyParameter: unknown = post.parameters.find((p: unknown) => isObject(p) && p.in === 'body');
  if (!isObject(bodyParameter) || !isObject(bodyParameter.schema)) throw new Error(`${file}: POST /spans has no body schema`);
  const bodyRef = bodyParameter.schema.$ref;

  const converted = Object.fromEntries(Object.entries(definitions).map(([name, schema]) => [name, swaggerSchemaToJsonSchema(schema, `definitions.${name}`)]));
  const consumes = (post.consumes ?? document.consumes ?? []) as string[];
  return {
    document,
    spansPath: `${typeof document.basePath === 'string' ? document.basePath : ''}/spans`,
    consumes,
    bodySchema: {
      $schema: 'http://json-schema.org/draft-07/schema#',
      ...swaggerSchemaToJsonSchema(bodyParameter.schema, 'paths./spans.post.body'),
      definitions: converted,
    },
    bodyDefinition: typeof bodyRef === 'string' ? bodyRef.replace('#/definitions/', '') : 'body',
  };
}

/** Compiles the body schema; the formats are the ones the contract uses. */
export function compileZipkinContract(contract: ZipkinContract): ValidateFunction {
  // strict: an unknown keyword or format fails at compile time rather than validating less.
  const ajv = new Ajv({ allErrors: true, strict: true });
  ajv.addFormat('int64', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 63) && n < 2 ** 63 });
  ajv.addFormat('int32', { type: 'number', validate: (n: number) => Number.isInteger(n) && n >= -(2 ** 31) && n < 2 ** 31 });
  ajv.addFormat('ipv4', { type: 'string', validate: (s: string) => net.isIPv4(s) });
  ajv.addFormat('ipv6', { type: 'string', validate: (s: string) => net.isIPv6(s) });
  return ajv.compile(contract.bodySchema);
}

/** One ajv error as `<instancePath> <message>`, with the allowed values of an enum. */
export function describeContractError(error: ErrorObject): string {
  const where = error.instancePath || '(root)';
  const allowed = error.keyword === 'enum' ? `: ${(error.params.allowedValues as unknown[]).join(', ')}` : '';
  return `${where} ${error.message}${allowed}`;
}

// ---------------------------------------------------------------------------------------------
// The HTTP side.

/** Start a receiver on 127.0.0.1 with an OS-assigned port; the contract is read once here. */
export async function startZipkinReceiver(): Promise<ZipkinReceiver> {
  const contract = loadZipkinContract();
  const validate = compileZipkinContract(contract);
  const spans: ZipkinSpan[] = [];
  const rejections: ZipkinRejection[] = [];
  const waiters = waitersFor(spans, summary);

  async function accept(req: http.IncomingMessage): Promise<void> {
    const body = await readBody(req);
    if ((req.url ?? '').split('?')[0] !== contract.spansPath)
      throw new HttpError(404, `no such endpoint ${req.method} ${req.url}; spans go to POST ${contract.spansPath}`);
    if (req.method !== 'POST') throw new HttpError(405, `${req.method} not allowed; use POST`);
    const mime = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (mime !== 'application/json') {
      const why = contract.consumes.includes(mime) ? 'is in the contract but this receiver decodes only application/json' : 'is not one the contract consumes';
      throw new HttpError(415, `Content-Type "${req.headers['content-type'] ?? ''}" ${why}`);
    }
    const text = inflateBody(body, req.headers['content-encoding']).toString('utf8');
    if (text.trim() === '') throw new HttpError(400, `the body is required: a ${contract.bodyDefinition}`, text);
    let payload: unknown;
    try {
      payload = JSON.parse(text);
    } catch (err) {
      throw new HttpError(400, `body is not JSON: ${(err as Error).message}`, text);
    }
    if (!validate(payload)) {
      const errors = (validate.errors ?? []).map(describeContractError).join('; ');
      throw new HttpError(400, `invalid ${contract.bodyDefinition}: ${errors}`, text);
    }
    spans.push(...(payload as ZipkinSpan[]));
  }

  const server = await startReceiverServer({
    accept,
    onAccepted(res) {
      // Zipkin answers an accepted upload with 202 and no body.
      res.writeHead(202).end();
      waiters.recheck();
    },
    onRefused: (refusal) => rejections.push(refusal),
  });
  const { url } = server;

  function summary(): string {
    const shown = spans.slice(-50).map((s) => `  ${s.kind ?? '-'} ${s.name ?? ''} trace=${s.traceId} id=${s.id} parent=${s.parentId ?? '-'}`);
    const refused = rejections.map((r) => `  ${r.status} ${r.message}`);
    return `received ${spans.length} span(s), ${rejections.length} rejection(s):\n${shown.join('\n')}${refused.length ? `\nrejections:\n${refused.join('\n')}` : ''}`;
  }

  return {
    url,
    spansUrl: `${url}${contract.spansPath}`,
    spans,
    rejections,
    waitFor: waiters.waitFor,
    async close() {
      waiters.rejectAll(`receiver closed while waiting; ${summary()}`);
      await server.close();
    },
  };
}
