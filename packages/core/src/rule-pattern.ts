/**
 * The `match` patterns of budget rules, compiled once, with a specificity so the most specific
 * matching rule wins whatever its place in the file.
 *
 * Routes: `METHOD /path` or `/path` (any method; `*` as the method too). Path segments are
 * literals, `:param` (matches a parameter segment of the route template, whatever its name),
 * `*` (any one segment) or `**` (any number of segments, none included). They are matched
 * against the route template (`http.route`, e.g. `/users/:id`), never the raw URL, so
 * `/users/:id` does not match `/users/me` unless the app routes `/users/me` itself.
 *
 * Jobs: names such as `email.send`; `*` matches within one dot-separated part, `**` across parts.
 *
 * Matching takes time linear in the route or name for every pattern (no backtracking).
 */
import { compileGlob } from './glob';

/** Compared element by element, higher first; see {@link compareSpecificity}. */
export type Specificity = readonly number[];

export interface CompiledPattern<Input extends unknown[]> {
  /** Set when the pattern is malformed: what is wrong, for the budget file error. */
  readonly problem?: string;
  readonly specificity: Specificity;
  matches(...input: Input): boolean;
}

type Segment = { kind: 'literal'; text: string } | { kind: 'param' } | { kind: 'star' } | { kind: 'globstar' };
// `**` ranks below the end of a pattern, so `/users` beats `/users/**` for the route `/users`.
const SEGMENT_RANK = { literal: 3, param: 2, star: 1, globstar: -2 } as const;
const END_OF_PATTERN = -1;
const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY'];
const NEVER: CompiledPattern<never[]> = { specificity: [], matches: () => false };

/** Compiles `GET /users/:id`, `/health`, `* /api/**`. */
export function compileRoutePattern(pattern: string): CompiledPattern<[method: string | undefined, route: string]> {
  const parts = pattern.trim().split(/\s+/);
  if (parts.length > 2) return { ...NEVER, problem: 'expected "METHOD /path" or "/path"' };
  const [method, path] = parts.length === 2 ? [parts[0].toUpperCase(), parts[1]] : ['*', parts[0]];
  if (method !== '*' && !METHODS.includes(method)) return { ...NEVER, problem: `"${parts[0]}" is not an HTTP method (expected ${METHODS.join(', ')} or *)` };
  if (!path.startsWith('/')) return { ...NEVER, problem: 'the path must start with /' };
  const never = neverMatchingPath(path);
  if (never !== undefined) return { ...NEVER, problem: `it can never match a route template: ${never}` };
  const segments = splitPath(path).map(toSegment);
  // Path first, segment by segment; then a longer pattern; then a named method.
  const specificity = [...segments.map((s) => SEGMENT_RANK[s.kind]), END_OF_PATTERN, segments.length, method === '*' ? 0 : 1];
  return {
    specificity,
    matches: (requestMethod, route) => (method === '*' || requestMethod?.toUpperCase() === method) && matchSegments(segments, splitPath(route)),
  };
}

/** Compiles `email.send`, `email.*`, `reports.**`. */
export function compileJobPattern(pattern: string): CompiledPattern<[name: string]> {
  const trimmed = pattern.trim();
  if (trimmed.length === 0) return { ...NEVER, problem: 'expected a job name pattern' };
  const matches = compileGlob(trimmed, { starStopsAt: '.' });
  const literalChars = trimmed.replace(/\*/g, '').length;
  const wildcards = (trimmed.match(/\*\*|\*/g) ?? []).length;
  return { specificity: [literalChars, -wildcards], matches };
}

/** Negative when `a` is more specific than `b` (sorts the most specific first). */
export function compareSpecificity(a: Specificity, b: Specificity): number {
  for (let i = 0; i < Math.max(a.length, b.length); i += 1) {
    const difference = (b[i] ?? -Infinity) - (a[i] ?? -Infinity);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** Why a path pattern can never match a route template, if it cannot. */
function neverMatchingPath(path: string): string | undefined {
  if (/[?#]/.test(path)) return 'route templates have no query string or fragment';
  for (const segment of splitPath(path)) {
    if (segment.includes('*') && segment !== '*' && segment !== '**') return `"${segment}": * and ** stand for whole segments only`;
    if (segment === ':') return 'a parameter needs a name, as in :id';
  }
  return undefined;
}

function splitPath(path: string): string[] {
  return path.split('/').filter((segment) => segment.length > 0);
}

function toSegment(text: string): Segment {
  if (text === '**') return { kind: 'globstar' };
  if (text === '*') return { kind: 'star' };
  if (text.startsWith(':')) return { kind: 'param' };
  return { kind: 'literal', text };
}

/**
 * Whether the route's segments match the pattern's, in O(pattern × route) steps whatever the
 * input: one pass over the route, keeping every pattern position reachable so far (`**` may
 * match no segment, so reaching it reaches the position after it too).
 */
function matchSegments(pattern: readonly Segment[], route: readonly string[]): boolean {
  let reachable = new Uint8Array(pattern.length + 1);
  let next = new Uint8Array(pattern.length + 1);
  reachable[0] = 1;
  skipGlobstars(pattern, reachable);
  for (const actual of route) {
    next.fill(0);
    let alive = false;
    for (let p = 0; p < pattern.length; p += 1) {
      if (reachable[p] === 0) continue;
      const segment = pattern[p];
      if (segment.kind === 'globstar') {
        next[p] = 1;
        alive = true;
      } else if (segment.kind === 'star' || (segment.kind === 'param' ? actual.startsWith(':') : actual === segment.text)) {
        next[p + 1] = 1;
        alive = true;
      }
    }
    if (!alive) return false;
    skipGlobstars(pattern, next);
    [reachable, next] = [next, reachable];
  }
  return reachable[pattern.length] === 1;
}

function skipGlobstars(pattern: readonly Segment[], reachable: Uint8Array): void {
  for (let p = 0; p < pattern.length; p += 1) if (reachable[p] === 1 && pattern[p].kind === 'globstar') reachable[p + 1] = 1;
}
