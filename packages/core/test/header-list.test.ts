import { describe, expect, it } from 'vitest';
import { parseHeaderList } from '../src/header-list';
import { traceLink, traceUrlTemplateProblem } from '../src/trace-link';

describe('parseHeaderList (the OTEL_EXPORTER_OTLP_HEADERS form)', () => {
  it('reads key=value pairs, trims them, lowercases names and URL-decodes values', () => {
    expect(parseHeaderList(' Authorization = Bearer%20s3cr%3Dt , X-Tenant=t1,,x-empty=')).toEqual({
      headers: { authorization: 'Bearer s3cr=t', 'x-tenant': 't1', 'x-empty': '' },
      problems: [],
    });
  });

  it('leaves out bad entries, naming them by position and never printing their text', () => {
    const { headers, problems } = parseHeaderList('Authorization: Bearer hunter2,x-ok=1,x-key=100%,bad name=hunter3');
    expect(headers).toEqual({ 'x-ok': '1' });
    expect(problems).toEqual([
      'entry 1 of 4 is not name=value',
      'entry 3 of 4 (x-key): the value is not URL-encoded text (a lone "%"?)',
      'entry 4 of 4: the part before "=" is not a header name',
    ]);
    expect(problems.join(' ')).not.toMatch(/hunter|Bearer|100/);
  });

  it('leaves out a value an HTTP client cannot send (a line break, a control character, beyond Latin-1)', () => {
    const { headers, problems } = parseHeaderList('a=x%0Ay,b=x%00,c=caf%C3%A9,d=%E2%9C%93,e=tab%09ok');
    expect(headers).toEqual({ c: 'café', e: 'tab\tok' });
    expect(problems).toEqual(
      ['a', 'b', 'd'].map(
        (name, index) =>
          `entry ${[1, 2, 4][index]} of 5 (${name}): the value has a character a header cannot carry (a line break, a control character, or one beyond Latin-1)`,
      ),
    );
  });
});

describe('trace links', () => {
  it('puts the trace id in place of {traceId}', () => {
    expect(traceLink('http://jaeger:16686/trace/{traceId}', 'ab'.repeat(16))).toBe(`http://jaeger:16686/trace/${'ab'.repeat(16)}`);
    expect(traceLink('http://zipkin:9411/zipkin/traces/{traceId}?x={traceId}', 'f1')).toBe('http://zipkin:9411/zipkin/traces/f1?x=f1');
  });

  it('accepts http(s) templates with {traceId} only', () => {
    expect(traceUrlTemplateProblem('https://ui.example/trace/{traceId}')).toBeUndefined();
    expect(traceUrlTemplateProblem('http://jaeger:16686/search')).toBe('has no {traceId} to put the trace id in');
    expect(traceUrlTemplateProblem('jaeger/trace/{traceId}')).toBe('is not an http(s) URL');
    expect(traceUrlTemplateProblem('ftp://x/{traceId}')).toBe('is not an http(s) URL');
  });
});
