/**
 * The bytes of export requests in flight: OTLP/HTTP bodies being read, inflated and decoded (an
 * OTLP/gRPC message, whole when grpc-js hands it over, is decoded and taken in within the same
 * turn: it is checked against the limit, never seen here by another). They count with the spans held against --memory-limit
 * (memory-gate.ts): without them, concurrent large bodies would each pass the check while none of
 * them was held yet.
 */

/** One request's part of the bytes in flight. */
export interface InFlightShare {
  /** What the request holds now. */
  readonly bytes: number;
  /** Sets what the request holds now (raw body, inflated body); ignored once released. */
  set(bytes: number): void;
  /** Gives the request's bytes back; safe to call again. */
  release(): void;
}

export class InFlightBytes {
  private total = 0;

  /** Bytes held by every request in flight now. */
  get bytes(): number {
    return this.total;
  }

  /** A share of 0 bytes for a request that begins; release it when the request ends, however it ends. */
  open(): InFlightShare {
    let held = 0;
    let released = false;
    return {
      get bytes() {
        return held;
      },
      set: (bytes) => {
        if (released) return;
        this.total += bytes - held;
        held = bytes;
      },
      release: () => {
        if (released) return;
        released = true;
        this.total -= held;
        held = 0;
      },
    };
  }
}
