/** A request a test server refuses: the status to answer, why, and (optionally) the body it carried. */
export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly body = '',
  ) {
    super(message);
  }
}
