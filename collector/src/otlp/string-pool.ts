/**
 * Text that repeats from span to span (attribute keys, span names) kept as one string each, not one
 * per span: the copy just read dies young instead of being held with the span. Bounded: once full,
 * new text is returned as it is, not kept.
 */
export class StringPool {
  private readonly strings = new Map<string, string>();

  constructor(private readonly maxStrings: number) {}

  shared(text: string): string {
    const shared = this.strings.get(text);
    if (shared !== undefined) return shared;
    if (this.strings.size < this.maxStrings) this.strings.set(text, text);
    return text;
  }
}
