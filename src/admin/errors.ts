/** A domain refusal with its HTTP status; the central error handler keeps statusCode and code. */
export class HttpError extends Error {
  constructor (readonly statusCode: number, message: string, readonly code?: string) {
    super(message)
    this.name = 'HttpError'
  }
}

export const httpError = (statusCode: number, message: string, code?: string): HttpError => new HttpError(statusCode, message, code)

/** The error body every admin route answers with (DESIGN §6). */
export interface ErrorBody { statusCode: number, error: string, message: string, code?: string }
