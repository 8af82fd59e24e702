/**
 * Glob patterns (`*` and `**`) matched in time linear in the text for a given pattern: the
 * pattern runs as a small automaton over the text, every state at once, so no input can make it
 * backtrack. Patterns and texts may both come from outside (budget files; statements and routes
 * sent to the collector), so a backtracking regular expression is not an option.
 */

/** What a single `*` may cross; `**` always crosses everything. */
export interface GlobOptions {
  /** A character a single `*` does not match (`.` for job names); none when undefined. */
  readonly starStopsAt?: string;
}

type Token = { readonly kind: 'char'; readonly char: string } | { readonly kind: 'any'; readonly stopsAt: string | undefined };

/** Compiles `pattern` once; the returned function tests a text against it. */
export function compileGlob(pattern: string, options: GlobOptions = {}): (text: string) => boolean {
  if (!pattern.includes('*')) return (text) => text === pattern;
  const tokens = tokenize(pattern, options.starStopsAt);
  const size = tokens.length + 1;
  return (text) => {
    let current = new Uint8Array(size);
    let next = new Uint8Array(size);
    current[0] = 1;
    close(tokens, current);
    for (let i = 0; i < text.length; i += 1) {
      const char = text[i];
      next.fill(0);
      let alive = false;
      for (let state = 0; state < tokens.length; state += 1) {
        if (current[state] === 0) continue;
        const token = tokens[state];
        if (token.kind === 'char' ? token.char === char : token.stopsAt !== char) {
          next[token.kind === 'char' ? state + 1 : state] = 1;
          alive = true;
        }
      }
      if (!alive) return false;
      close(tokens, next);
      [current, next] = [next, current];
    }
    return current[tokens.length] === 1;
  };
}

/** A wildcard may match nothing: whoever reaches it reaches the state after it too. */
function close(tokens: readonly Token[], states: Uint8Array): void {
  for (let state = 0; state < tokens.length; state += 1) {
    if (states[state] === 1 && tokens[state].kind === 'any') states[state + 1] = 1;
  }
}

function tokenize(pattern: string, starStopsAt: string | undefined): Token[] {
  const tokens: Token[] = [];
  for (let i = 0; i < pattern.length; i += 1) {
    if (pattern[i] !== '*') {
      tokens.push({ kind: 'char', char: pattern[i] });
      continue;
    }
    const double = pattern[i + 1] === '*';
    if (double) while (pattern[i + 1] === '*') i += 1;
    const stopsAt = double ? undefined : starStopsAt;
    // Consecutive wildcards: the widest one alone matches the same texts.
    const previous = tokens[tokens.length - 1];
    if (previous?.kind === 'any') {
      if (stopsAt === undefined) tokens[tokens.length - 1] = { kind: 'any', stopsAt };
      continue;
    }
    tokens.push({ kind: 'any', stopsAt });
  }
  return tokens;
}
