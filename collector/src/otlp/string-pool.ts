/**
 * Text that repeats from span to span (attribute keys, span names) kept as one string each, not one
 * per span: the copy just read dies young instead of being held with the span. Bounded in count and
 * in length (text longer than MAX_POOLED_LENGTH, a statement used as a span name, is never kept):
 * once full, new text is returned as it is.
 */
const MAX_POOLED_LENGTH = 128;

export class StringPool {
  private readonly strings = new Map<string, string>();

  constructor(private readonly maxStrings: number) {}

  shared(text: string): string {
    if (text.length > MAX_POOLED_LENGTH) return text;
    const shared = this.strings.get(text);
    if (shared !== undefined) return shared;
    if (this.strings.size < this.maxStrings) this.strings.set(text, text);
    return text;
  }
}
