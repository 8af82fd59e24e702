/**
 * axios: what bounds a call is in its config — `timeout`, `signal`, `cancelToken` — which the
 * request that reaches node:http (through follow-redirects, whose own 'timeout' forwarder hides
 * whether axios listens) does not show. `Axios.prototype._request`, which every call of every
 * instance goes through, is wrapped to put the call's protections in the OpenTelemetry context;
 * the http (and undici, for the fetch adapter) hooks read them there.
 *
 * The config is read as axios merges it (the call's value, else the instance default). A request
 * interceptor that changes `timeout` or `signal` afterwards is not seen.
 */
import { context, createContextKey, type Context } from '@opentelemetry/api';
import { signalProtection } from './abort-signal-delays';
import { reportHookFailure, reportOnce } from './report-once';
import { timerProtection, type Protection } from './timeout-judgement';

const AXIOS_CALL = createContextKey('request-budget axios call');
const ORIGINAL = Symbol('request-budget.axios-original');

type RequestMethod = ((this: AxiosInstanceLike, configOrUrl?: unknown, config?: unknown) => unknown) & { [ORIGINAL]?: RequestMethod };
interface AxiosInstanceLike {
  defaults?: Record<string, unknown>;
}
interface AxiosClass {
  prototype: { _request?: RequestMethod };
}

/** The protections of the axios call under way in `ctx`, or undefined outside any axios call. */
export function axiosCallProtections(ctx: Context): readonly Protection[] | undefined {
  return ctx.getValue(AXIOS_CALL) as readonly Protection[] | undefined;
}

/** Patches axios's module exports (CommonJS: the default instance; ESM: the namespace). */
export function patchAxios<T>(moduleExports: T): T {
  const Axios = axiosClassOf(moduleExports);
  const original = Axios?.prototype._request;
  if (Axios === undefined || typeof original !== 'function') {
    reportOnce(
      'axios:shape',
      'axios: Axios.prototype._request not found in this version; axios calls are judged by their node:http request only, so a call bounded only by `signal` counts as untimed',
    );
    return moduleExports;
  }
  if (original[ORIGINAL] !== undefined) return moduleExports;
  const wrapped: RequestMethod = function _request(this: AxiosInstanceLike, ...args: [unknown?, unknown?]) {
    let protections: Protection[] | undefined;
    try {
      protections = protectionsOf(this, args[0], args[1]);
    } catch (error) {
      reportHookFailure('axios', error);
    }
    if (protections === undefined) return original.apply(this, args);
    return context.with(context.active().setValue(AXIOS_CALL, protections), () => original.apply(this, args));
  };
  wrapped[ORIGINAL] = original;
  Axios.prototype._request = wrapped;
  return moduleExports;
}

export function unpatchAxios<T>(moduleExports: T): void {
  const Axios = axiosClassOf(moduleExports);
  const current = Axios?.prototype._request;
  if (Axios !== undefined && current?.[ORIGINAL] !== undefined) Axios.prototype._request = current[ORIGINAL];
}

/** As axios merges them: the call's own value, else the instance's default. */
function protectionsOf(instance: AxiosInstanceLike, configOrUrl: unknown, config: unknown): Protection[] {
  const call = (typeof configOrUrl === 'string' ? config : configOrUrl) as Record<string, unknown> | undefined;
  const pick = (key: string): unknown => {
    const own = call !== null && typeof call === 'object' ? call[key] : undefined;
    return own !== undefined ? own : instance?.defaults?.[key];
  };
  const protections: Protection[] = [];
  const timeout = timerProtection('axios timeout', pick('timeout'));
  if (timeout !== undefined) protections.push(timeout);
  const signal = signalProtection(pick('signal'), 'axios signal');
  if (signal !== undefined) protections.push(signal);
  // A CancelToken is cancelled by the caller's own code, at a time nobody can read.
  if (pick('cancelToken') != null) protections.push({ source: 'axios cancelToken', ms: undefined });
  return protections;
}

function axiosClassOf(moduleExports: unknown): AxiosClass | undefined {
  const candidates = [moduleExports, (moduleExports as { default?: unknown } | undefined)?.default];
  for (const candidate of candidates) {
    const Axios: unknown = (candidate as { Axios?: unknown } | undefined)?.Axios;
    if (typeof Axios === 'function' && typeof Axios.prototype === 'object') return Axios;
  }
  return undefined;
}
