import type { FastifyRequest } from 'fastify'
import { STATUS_CODES } from 'node:http'
import { Type, type ObjectOptions, type StringOptions } from '@sinclair/typebox'
import { ErrorSchema, httpError } from '../../src/admin/errors.js'
import { TOKEN_PATTERN } from '../../src/admin/tokens.js'
import { jsonDeeperThan, tooDeepMessage } from '../../src/json-depth.js'

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

// PostgreSQL text cannot hold U+0000 and jsonb refuses an unpaired surrogate (JSON.parse accepts "\ud800"): a string
// that reaches a column contains neither. Ajv matches with the u flag, so a well-formed pair (an emoji) passes.
export const TEXT_PATTERN = '^[^\\u0000\\uD800-\\uDFFF]*$'

/** Free text stored as is (names, MIDs, metadata). */
export const TextSchema = (options: StringOptions = {}) => Type.String({ pattern: TEXT_PATTERN, ...options })

/** Our tokens (users, cards, controls), in a body, a query or a path: 1–36 of [A-Za-z0-9_-] (DESIGN §6). */
export const TokenSchema = Type.String({ pattern: TOKEN_PATTERN })

/** A token in a path that does not have the token form is a 400 naming `params/token`, not a lookup. */
export const TokenParamsSchema = Type.Object({ token: Type.String({ pattern: TOKEN_PATTERN, description: 'the object\'s token', examples: ['alice'] }) })

/** Marqeta's own tokens (a JIT token, the user and card tokens a JIT request names): as the JIT schema accepts them. */
export const MarqetaTokenSchema = TextSchema({ minLength: 1, maxLength: 64 })

/**
 * Ajv coerces the text "Infinity" to a number that its minimum and maximum checks skip: integer fields of a query or
 * body written that way are refused here, naming the field.
 */
export const finiteIntegers = (part: 'query' | 'body', ...names: string[]) => async (request: FastifyRequest): Promise<void> => {
  const values = request[part] as Record<string, unknown> | undefined
  for (const name of names) {
    const value = values?.[name]
    if (typeof value === 'string' && !Number.isFinite(Number(value))) {
      throw httpError(400, `${part === 'query' ? 'querystring' : 'body'}/${name} must be a finite integer`, 'FST_ERR_VALIDATION')
    }
  }
}

/** Refuses a body nested deeper than MAX_JSON_DEPTH before anything walks it recursively. */
export async function rejectDeepBody (request: FastifyRequest): Promise<void> {
  if (jsonDeeperThan(request.body)) throw httpError(400, tooDeepMessage, 'BODY_TOO_DEEP')
}

// String first: Fastify's coercion then turns a JSON number into its shortest decimal text, which parseAmount reads exactly.
export const AmountSchema = Type.Union([Type.String(), Type.Number()], { description: 'a decimal string ("12.50") or a number; exact, no floats' })

export const CurrencyCodeSchema = Type.String({ pattern: '^[A-Z]{3}$' })

export const TimeSchema = Type.String({ format: 'date-time' })

export const BalancesSchema = Type.Object({
  currency_code: Type.String(),
  available_balance: Type.String({ description: 'credits posted - debits posted - pending holds' }),
  ledger_balance: Type.String({ description: 'credits posted - debits posted' }),
  pending_holds: Type.String()
})

/** Balances per currency, as the admin API answers them (decimal strings). */
export const BalancesByCurrencySchema = Type.Record(Type.String({ pattern: '^[A-Z]{3}$' }), BalancesSchema, {
  description: 'Balances by ISO 4217 currency code',
  examples: [{ USD: { currency_code: 'USD', available_balance: '87.50', ledger_balance: '100.00', pending_holds: '12.50' } }]
})

export const ListOf = <T extends Parameters<typeof Type.Array>[0]>(item: T, options: ObjectOptions = {}) =>
  Type.Object({ data: Type.Array(item) }, { description: 'A list, newest first where it has an order', ...options })
