import { Type, type Static } from '@sinclair/typebox'

/** A refusal with its HTTP status; the central error handler keeps statusCode and code. */
export class HttpError extends Error {
  constructor (readonly statusCode: number, message: string, readonly code?: string) {
    super(message)
    this.name = 'HttpError'
  }
}

export const httpError = (statusCode: number, message: string, code?: string): HttpError => new HttpError(statusCode, message, code)

/** The one error body of every route (DESIGN §6): the admin API, the JIT gateway's 4xx/503 and the webhooks. */
export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String())
})
export type ErrorBody = Static<typeof ErrorSchema>
