// The part of supertest 7 the tests use. @types/supertest is not installed in this repository;
// a project that has it gets the full types and writes the same code.
declare module 'supertest' {
  import type { RequestListener, Server } from 'node:http';

  namespace request {
    interface Response {
      readonly status: number;
      readonly text: string;
      readonly body: unknown;
      readonly headers: Record<string, string | string[] | undefined>;
    }
    /** A request, sent when awaited (or when end() is called). */
    interface Test extends PromiseLike<Response> {
      expect(status: number): Test;
      set(field: string, value: string): Test;
      send(body: unknown): Test;
    }
    type Agent = Record<'get' | 'post' | 'put' | 'patch' | 'delete' | 'head' | 'options', (path: string) => Test>;
  }

  /** Serves an app object (or a server) on an ephemeral port for the requests made on it. */
  function request(app: RequestListener | Server | string): request.Agent;
  export = request;
}
