/**
 * Request headers written as OpenTelemetry writes them in OTEL_EXPORTER_OTLP_HEADERS:
 * `key=value,key2=value2`, blanks around each part ignored, values URL-decoded (so `%20` is a
 * space and `%2C` a comma). Names are lowercased. Headers usually carry secrets, so a problem
 * names the entry by its position, never its text: not even the name, which may be a pasted
 * `Authorization: Bearer …` line.
 */

/** Header names as HTTP allows them (RFC 9110 tokens). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i;
/** What a header value may carry (as Node's HTTP client checks it): no line break, nothing beyond Latin-1. */
export const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]*$/;

export interface HeaderList {
  readonly headers: Record<string, string>;
  /** One line per entry left out, e.g. `entry 2 of 3 is not name=value`; no value in it. */
  readonly problems: string[];
}

export function parseHeaderList(text: string): HeaderList {
  const headers: Record<string, string> = {};
  const problems: string[] = [];
  const entries = text.split(',').filter((entry) => entry.trim() !== '');
  entries.forEach((entry, index) => {
    const which = `entry ${index + 1} of ${entries.length}`;
    const equals = entry.indexOf('=');
    if (equals < 0) {
      problems.push(`${which} is not name=value`);
      return;
    }
    const name = entry.slice(0, equals).trim();
    if (!HEADER_NAME.test(name)) {
      problems.push(`${which}: the part before "=" is not a header name`);
      return;
    }
    let headerValue: string;
    try {
      headerValue = decodeURIComponent(entry.slice(equals + 1).trim());
    } catch {
      problems.push(`${which} (${name.toLowerCase()}): the value is not URL-encoded text (a lone "%"?)`);
      return;
    }
    if (!HEADER_VALUE.test(headerValue)) {
      problems.push(
        `${which} (${name.toLowerCase()}): the value has a character a header cannot carry (a line break, a control character, or one beyond Latin-1)`,
      );
      return;
    }
    headers[name.toLowerCase()] = headerValue;
  });
  return { headers, problems };
}
