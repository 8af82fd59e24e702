/**
 * A wrapper installed over a prototype method that can be switched off and on again, for
 * instrumentations that patch in place rather than through shimmer's `_wrap`: `_wrap` unwraps
 * any marked wrapper of the same method first (another instrumentation's included), while an
 * unmarked layer stacks with them in either order.
 */

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- wraps methods of any shape
export type AnyFunction = (this: any, ...args: any[]) => any;

/** Whether a layer's wrapper does its work or only passes calls through. */
export interface LayerState {
  active: boolean;
}

const LAYER = Symbol('request-budget.layer');
const ORIGINAL = Symbol('request-budget.layer-original');

/**
 * Replaces `target[method]` with `wrap(original, state)`, unless a layer with this `name` is
 * already in its chain of wrappers, which is switched back on instead. Returns false when there
 * is no such method.
 */
export function installLayer(
  target: object | undefined,
  method: string,
  name: string,
  wrap: (original: AnyFunction, state: LayerState) => AnyFunction,
): boolean {
  const holder = target as Record<string, unknown> | undefined;
  const current = holder?.[method];
  if (holder === undefined || typeof current !== 'function') return false;
  const existing = findLayer(current as AnyFunction, name);
  if (existing !== undefined) {
    existing.active = true;
    return true;
  }
  const state: LayerState = { active: true };
  const wrapper = wrap(current as AnyFunction, state);
  Object.defineProperty(wrapper, LAYER, { value: { name, state } });
  Object.defineProperty(wrapper, ORIGINAL, { value: current });
  holder[method] = wrapper;
  return true;
}

/**
 * Turns the layer into a pass-through, and takes it out when it is still on top (another
 * instrumentation may have wrapped it since, and would unwrap to it).
 */
export function removeLayer(target: object | undefined, method: string, name: string): void {
  const holder = target as Record<string, unknown> | undefined;
  const current = holder?.[method];
  if (holder === undefined || typeof current !== 'function') return;
  const state = findLayer(current as AnyFunction, name);
  if (state === undefined) return;
  state.active = false;
  const top = (current as { [LAYER]?: { name: string } })[LAYER];
  if (top?.name === name) holder[method] = (current as { [ORIGINAL]?: unknown })[ORIGINAL];
}

/** The named layer's state in a chain of wrappers (ours and shimmer's `__original` links). */
function findLayer(fn: AnyFunction, name: string): LayerState | undefined {
  for (let layer: AnyFunction | undefined = fn; layer !== undefined;) {
    const mark = (layer as { [LAYER]?: { name: string; state: LayerState } })[LAYER];
    if (mark?.name === name) return mark.state;
    layer = (layer as { [ORIGINAL]?: AnyFunction })[ORIGINAL] ?? (layer as { __original?: AnyFunction }).__original;
  }
  return undefined;
}
