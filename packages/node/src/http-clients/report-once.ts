/**
 * The HTTP client hooks' messages to the operator: each distinct problem once per process, so a
 * hook that fails on every call does not flood stderr.
 */
import { describeError, reportProblem } from '../diagnostics';

const reported = new Set<string>();

/** Reports `message` the first time `key` is seen. */
export function reportOnce(key: string, message: string): void {
  if (reported.has(key)) return;
  reported.add(key);
  reportProblem(message);
}

/** Reports a hook that threw (once per hook): the call goes on unjudged. */
export function reportHookFailure(hook: string, error: unknown): void {
  reportOnce(`hook:${hook}`, `judging outgoing call timeouts failed in ${hook}; those calls are left unjudged (reported once): ${describeError(error)}`);
}
