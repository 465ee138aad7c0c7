import { Type } from '@sinclair/typebox'
import { TOKEN_PATTERN } from '../../src/admin/tokens.js'

export const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String())
})

/** The error statuses of a route, all with the same body. */
export const errors = <S extends number>(...statuses: S[]): Record<S, typeof ErrorSchema> =>
  Object.fromEntries(statuses.map((s) => [s, ErrorSchema])) as Record<S, typeof ErrorSchema>

export const TokenSchema = Type.String({ pattern: TOKEN_PATTERN })

/** Path tokens are not pattern-checked: a token that cannot exist is simply not found (404). */
export const TokenParamsSchema = Type.Object({ token: Type.String({ minLength: 1, maxLength: 255 }) })

// String first: Fastify's coercion then turns a JSON number into its shortest decimal text, which parseAmount reads exactly.
export const AmountSchema = Type.Union([Type.String(), Type.Number()])

export const CurrencyCodeSchema = Type.String({ pattern: '^[A-Z]{3}$' })

export const TimeSchema = Type.String({ format: 'date-time' })

export const BalancesSchema = Type.Object({
  currency_code: Type.String(),
  available_balance: Type.String(),
  ledger_balance: Type.String(),
  pending_holds: Type.String()
})

export const ListOf = <T extends Parameters<typeof Type.Array>[0]>(item: T) => Type.Object({ data: Type.Array(item) })
