import type { FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { Type } from '@sinclair/typebox'
import { ErrorSchema, httpError } from '../src/admin/errors.js'
import { jsonDeeperThan, tooDeepMessage } from '../src/json-depth.js'

// What every route family shares: the one error body and its documented statuses, and the body-depth guard.

export { ErrorSchema }

const errorDefaults: Record<number, [description: string, message: string, code?: string]> = {
  400: ['Malformed JSON or an invalid value; the message names the bad field', 'body/amount must be string', 'FST_ERR_VALIDATION'],
  401: ['Missing or wrong credentials', 'a valid bearer token is required'],
  404: ['Not found', 'user alice not found', 'NOT_FOUND'],
  409: ['Conflicts with the current state', 'a user with token alice already exists', 'DUPLICATE_TOKEN'],
  413: ['Body larger than the limit', 'Request body is too large', 'FST_ERR_CTP_BODY_TOO_LARGE'],
  422: ['The Idempotency-Key was first used with a different body', 'this Idempotency-Key was already used with a different request body', 'IDEMPOTENCY_KEY_REUSED'],
  503: ['A store this route needs is unavailable; retry', 'Service Unavailable']
}

/** One documented error status: the shared error body (ErrorSchema) with its own description and example. */
export const errorResponse = (statusCode: number, description?: string, message?: string, code?: string) => {
  const [defaultDescription, defaultMessage, defaultCode] = errorDefaults[statusCode] ?? ['Error', 'error']
  const example: Record<string, unknown> = { statusCode, error: STATUS_CODES[statusCode] ?? 'Error', message: message ?? defaultMessage }
  const exampleCode = code ?? (message === undefined ? defaultCode : undefined)
  if (exampleCode !== undefined && statusCode < 500) example.code = exampleCode
  return Type.Object(ErrorSchema.properties, { description: description ?? defaultDescription, examples: [example] })
}

/**
 * The error statuses of a route, all with the same body (ErrorSchema): a status alone takes the generic description,
 * `[status, description, example message?, example code?]` says what that route means by it.
 */
export const errors = <S extends number>(...statuses: Array<S | [S, string, string?, string?]>): Record<S, typeof ErrorSchema> =>
  Object.fromEntries(statuses.map((s) => typeof s === 'number' ? [s, errorResponse(s)] : [s[0], errorResponse(...s)])) as Record<S, typeof ErrorSchema>

/** Refuses a body nested deeper than MAX_JSON_DEPTH before anything walks it recursively. */
export async function rejectDeepBody (request: FastifyRequest): Promise<void> {
  if (jsonDeeperThan(request.body)) throw httpError(400, tooDeepMessage, 'BODY_TOO_DEEP')
}
