/**
 * The instrumentation that lets the http and undici span hooks judge outgoing calls: it patches
 * axios, got and undici where they keep what bounds a call, and, process-wide, remembers the delay
 * of `AbortSignal.timeout()` signals and of `ClientRequest#setTimeout` calls. It creates no spans.
 */
import type { HttpInstrumentationConfig } from '@opentelemetry/instrumentation-http';
import type { UndiciInstrumentationConfig } from '@opentelemetry/instrumentation-undici';
import {
  InstrumentationBase,
  InstrumentationNodeModuleDefinition,
  InstrumentationNodeModuleFile,
  type InstrumentationConfig,
} from '@opentelemetry/instrumentation';
import { ClientRequest } from 'node:http';
import { trackAbortSignalDelays } from './abort-signal-delays';
import { patchAxios, unpatchAxios } from './axios-calls';
import { patchGot, unpatchGot } from './got-requests';
import { NodeHttpCallJudge, recordSetTimeoutDelays } from './node-http-calls';
import { UndiciCallJudge, patchUndiciApi, patchUndiciFetch, unpatchUndiciApi, unpatchUndiciFetch } from './undici-calls';
import { patchDispatcherBase, unpatchDispatcherBase } from './undici-dispatch';

/** Default of `maxClientTimeoutMs`. */
export const DEFAULT_MAX_CLIENT_TIMEOUT_MS = 30_000;

export interface HttpClientTimeoutConfig extends InstrumentationConfig {
  /**
   * A call whose timeout is longer than this counts as untimed: the rule is about a timeout that
   * protects the caller.
   * @default 30000
   */
  maxClientTimeoutMs?: number;
}

// Process-wide patches, shared by every instance (there is one per SDK, and one SDK per process).
let undoProcessWide: (() => void) | undefined;

export class HttpClientTimeoutInstrumentation extends InstrumentationBase<HttpClientTimeoutConfig> {
  constructor(config: HttpClientTimeoutConfig = {}) {
    super('@request-budget/http-client-timeouts', '0.1.0', config);
  }

  /** The ceiling in force. */
  get maxClientTimeoutMs(): number {
    return this.getConfig().maxClientTimeoutMs ?? DEFAULT_MAX_CLIENT_TIMEOUT_MS;
  }

  /** startOutgoingSpanHook and requestHook for instrumentation-http. */
  httpHooks(): Required<Pick<HttpInstrumentationConfig, 'startOutgoingSpanHook' | 'requestHook'>> {
    const judge = new NodeHttpCallJudge(() => this.maxClientTimeoutMs);
    return { startOutgoingSpanHook: judge.startOutgoingSpanHook, requestHook: judge.requestHook };
  }

  /** startSpanHook for instrumentation-undici. */
  undiciHooks(): Required<Pick<UndiciInstrumentationConfig, 'startSpanHook'>> {
    return { startSpanHook: new UndiciCallJudge(() => this.maxClientTimeoutMs).startSpanHook };
  }

  protected init() {
    const undiciVersions = ['>=6 <9'];
    return [
      new InstrumentationNodeModuleDefinition('axios', ['>=1 <2'], patchAxios, unpatchAxios),
      new InstrumentationNodeModuleDefinition('got', ['>=16 <17'], patchGot, unpatchGot),
      new InstrumentationNodeModuleDefinition('undici', undiciVersions, undefined, undefined, [
        new InstrumentationNodeModuleFile('undici/lib/dispatcher/dispatcher-base.js', undiciVersions, patchDispatcherBase, unpatchDispatcherBase),
        new InstrumentationNodeModuleFile('undici/lib/api/index.js', undiciVersions, patchUndiciApi, unpatchUndiciApi),
        new InstrumentationNodeModuleFile('undici/lib/web/fetch/index.js', undiciVersions, patchUndiciFetch, unpatchUndiciFetch),
      ]),
    ];
  }

  // Called by the base constructor too, before this class's fields exist: it touches none.
  override enable(): void {
    super.enable();
    if (undoProcessWide !== undefined) return;
    const undo = [trackAbortSignalDelays(), recordSetTimeoutDelays(ClientRequest)];
    undoProcessWide = () => {
      for (const step of undo.reverse()) step();
    };
  }

  override disable(): void {
    super.disable();
    undoProcessWide?.();
    undoProcessWide = undefined;
  }
}
