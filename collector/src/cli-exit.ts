/** How the CLI says what went wrong and stops, on either thread. */

export const NAME = 'request-budget-collector';

/** Writes `lines` to stderr and exits with `code` (from a worker: ends it with that code). */
export function fail(code: number, lines: readonly string[]): never {
  for (const line of lines) process.stderr.write(`${NAME}: ${line}\n`);
  process.exit(code);
}
