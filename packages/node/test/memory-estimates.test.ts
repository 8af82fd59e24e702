/**
 * A route's memory estimate with late corrections: a collection's freed bytes, known after its
 * request was recorded, make the estimate what recording the corrected figure would have made it,
 * and leave the window with that request.
 */
import { describe, expect, it } from 'vitest';
import { RouteMemoryEstimates } from '../src/memory-estimates';

/** Buckets of 10 s over a minute, on a clock the test moves. */
function estimates() {
  const clock = { ms: 0 };
  return { clock, estimates: new RouteMemoryEstimates({ windowMs: 60_000, buckets: 6, minRequests: 3, now: () => clock.ms }) };
}

describe('route memory estimates', () => {
  it('waits for minRequests, then gives the mean', () => {
    const { estimates: route } = estimates();
    route.record('GET /a', 100);
    route.record('GET /a', 200);
    expect(route.estimate('GET /a')).toBeUndefined();
    route.record('GET /a', 600);
    expect(route.estimate('GET /a')).toMatchObject({ meanBytes: 300, requests: 3 });
    // Figures cut by collections whose freed bytes never arrived: never a mean below nothing.
    for (const bytes of [-900, -900, 200]) route.record('GET /cut', bytes);
    expect(route.estimate('GET /cut')).toMatchObject({ meanBytes: 0, requests: 3 });
  });

  it('a late correction gives the same mean and error as the corrected figure recorded', () => {
    const { estimates: corrected } = estimates();
    const stamp = corrected.record('GET /a', -500);
    corrected.record('GET /a', 100);
    corrected.record('GET /a', 100);
    corrected.correct('GET /a', stamp, -500, 300);
    corrected.correct('GET /a', stamp, -200, 600);
    const { estimates: direct } = estimates();
    for (const bytes of [400, 100, 100]) direct.record('GET /a', bytes);
    expect(corrected.estimate('GET /a')).toEqual(direct.estimate('GET /a'));
    expect(corrected.estimate('GET /a')).toMatchObject({ meanBytes: 200, requests: 3 });
  });

  it('a correction known in the next bucket leaves the window with its request', () => {
    const { clock, estimates: route } = estimates();
    clock.ms = 9_999;
    const stamp = route.record('GET /a', 100);
    route.record('GET /a', 100);
    route.record('GET /a', 100);
    clock.ms = 10_000;
    route.correct('GET /a', stamp, 100, 3_000);
    for (let index = 0; index < 3; index++) route.record('GET /a', 100);
    expect(route.estimate('GET /a')).toMatchObject({ meanBytes: 600, requests: 6 });
    // The first bucket has left the window: its request and the 3,000 bytes with it.
    clock.ms = 60_000;
    expect(route.estimate('GET /a')).toEqual({ meanBytes: 100, errorBytes: 0, requests: 3 });
  });

  it('drops a correction whose bucket was reused, and never tracks a route for one', () => {
    const { clock, estimates: route } = estimates();
    const stamp = route.record('GET /a', 100);
    clock.ms = 60_000;
    for (let index = 0; index < 3; index++) route.record('GET /a', 100);
    route.correct('GET /a', stamp, 100, 3_000);
    route.correct('GET /unknown', stamp, 100, 3_000);
    expect(route.estimate('GET /a')).toEqual({ meanBytes: 100, errorBytes: 0, requests: 3 });
    expect(route.estimate('GET /unknown')).toBeUndefined();
  });

  it('estimates a quiet route from every request since start while the window holds too few', () => {
    const { clock, estimates: route } = estimates();
    const stamp = route.record('GET /quiet', 100);
    clock.ms = 50_000;
    route.record('GET /quiet', 200);
    expect(route.estimate('GET /quiet')).toBeUndefined();
    clock.ms = 100_000;
    route.record('GET /quiet', 300);
    // The first request has left the window; since start, three requests and a late correction.
    route.correct('GET /quiet', stamp, 100, 300);
    expect(route.estimate('GET /quiet')).toMatchObject({ meanBytes: 300, requests: 3 });
    // Once the window holds enough, the window alone: 200 (at 50 s), 300 and three of 1,000.
    for (let index = 0; index < 3; index++) route.record('GET /quiet', 1_000);
    expect(route.estimate('GET /quiet')).toMatchObject({ meanBytes: 700, requests: 5 });
  });
});
