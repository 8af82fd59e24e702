import { describe, expect, it } from 'vitest';
import { installLayer, removeLayer, type AnyFunction } from '../src/prototype-layer';

class Target {
  greet(name: string): string {
    return `hello ${name}`;
  }
}

/** A layer that marks what passed through it, while it is active. */
function marking(label: string) {
  return (original: AnyFunction, state: { active: boolean }) =>
    function marked(this: unknown, name: string) {
      return state.active ? `${label}(${original.call(this, name)})` : original.call(this, name);
    };
}

/** What shimmer (and so InstrumentationBase._wrap) leaves: a wrapper linked by __original. */
function shimmerWrap(prototype: Target, label: string): void {
  const original = prototype.greet;
  const wrapper = function (this: Target, name: string) {
    return `${label}[${original.call(this, name)}]`;
  };
  Object.assign(wrapper, { __original: original, __wrapped: true });
  prototype.greet = wrapper;
}

describe('installLayer and removeLayer', () => {
  it('wraps a method, and removing the layer on top restores the original', () => {
    class T extends Target {}
    const original = T.prototype.greet;
    expect(installLayer(T.prototype, 'greet', 'a', marking('a'))).toBe(true);
    expect(new T().greet('x')).toBe('a(hello x)');
    removeLayer(T.prototype, 'greet', 'a');
    expect(T.prototype.greet).toBe(original);
    expect(new T().greet('x')).toBe('hello x');
  });

  it('stacks under a shimmer wrapper; removed, it passes through and the wrapper stays', () => {
    class T extends Target {}
    installLayer(T.prototype, 'greet', 'a', marking('a'));
    shimmerWrap(T.prototype, 'otel');
    expect(new T().greet('x')).toBe('otel[a(hello x)]');
    removeLayer(T.prototype, 'greet', 'a');
    expect(new T().greet('x')).toBe('otel[hello x]');
    // Installed again, the layer under the wrapper is switched back on, not stacked twice.
    installLayer(T.prototype, 'greet', 'a', marking('a'));
    expect(new T().greet('x')).toBe('otel[a(hello x)]');
  });

  it('stacks over a shimmer wrapper, and layers of other names stack too', () => {
    class T extends Target {}
    shimmerWrap(T.prototype, 'otel');
    installLayer(T.prototype, 'greet', 'a', marking('a'));
    installLayer(T.prototype, 'greet', 'b', marking('b'));
    expect(new T().greet('x')).toBe('b(a(otel[hello x]))');
    removeLayer(T.prototype, 'greet', 'a');
    expect(new T().greet('x')).toBe('b(otel[hello x])');
  });

  it('reports a missing method and leaves the target alone', () => {
    const target = { other: 1 };
    expect(installLayer(target, 'greet', 'a', marking('a'))).toBe(false);
    expect(installLayer(undefined, 'greet', 'a', marking('a'))).toBe(false);
    removeLayer(target, 'greet', 'a');
    expect(target).toEqual({ other: 1 });
  });
});
