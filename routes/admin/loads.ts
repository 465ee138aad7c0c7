import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { moveFunds, type FundsDirection } from '../../src/admin/funds.js'
import { AmountSchema, BalancesByCurrencySchema, CurrencyCodeSchema, errors, TextSchema, TokenParamsSchema } from './schemas.js'

const FundsSchema = Type.Object({
  token: Type.String(),
  user_token: Type.String(),
  amount: Type.String(),
  currency_code: Type.String(),
  balances: BalancesByCurrencySchema
}, {
  description: 'The movement and the balances after it; a replay (same key, same body) answers this again with the header idempotent-replayed: true',
  examples: [{ token: 'load-7f3a', user_token: 'alice', amount: '100.00', currency_code: 'USD', balances: { USD: { currency_code: 'USD', available_balance: '100.00', ledger_balance: '100.00', pending_holds: '0.00' } } }]
})

const schemaOf = (direction: FundsDirection) => ({
  tags: ['funds'],
  summary: direction === 'loads' ? 'Load funds onto a cardholder\'s account' : 'Unload funds from a cardholder\'s account',
  description: (direction === 'loads' ? 'Credits the account from the program funding account.' : 'Debits the account back to the program funding account; refused with 409 INSUFFICIENT_FUNDS if available < amount.') +
    ' Idempotent by the Idempotency-Key header, per route and user: the same key with an equal body (amounts compared as values) answers the first response, a different body 422.',
  params: TokenParamsSchema,
  headers: Type.Object({ 'idempotency-key': TextSchema({ minLength: 1, maxLength: 255, description: 'required; 1-255 characters', examples: ['2026-01-15-payroll-alice'] }) }),
  body: Type.Object({ amount: AmountSchema, currency_code: CurrencyCodeSchema }, { examples: [{ amount: '100.00', currency_code: 'USD' }] }),
  response: {
    201: FundsSchema,
    ...errors([400, 'Invalid amount or currency, or no Idempotency-Key header', 'headers must have required property \'idempotency-key\'', 'FST_ERR_VALIDATION'], 401,
      [404, 'No user has this token'],
      direction === 'loads'
        ? [409, 'The user is CLOSED', 'the user is CLOSED', 'CLOSED_ACCOUNT']
        : [409, 'Available balance below the amount (or the user is CLOSED: CLOSED_ACCOUNT)', 'available balance is lower than the amount', 'INSUFFICIENT_FUNDS'],
      422)
  }
})

/** POST /users/:token/loads and /unloads (DESIGN §6): idempotent by the Idempotency-Key header, per route and user. */
const loads: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  for (const direction of ['loads', 'unloads'] as FundsDirection[]) {
    app.post(`/users/:token/${direction}`, { schema: schemaOf(direction) }, async (request, reply) => {
      const answer = await moveFunds(db, direction, {
        user_token: request.params.token,
        idempotency_key: request.headers['idempotency-key'],
        amount: request.body.amount,
        currency_code: request.body.currency_code
      })
      if (answer.replayed) reply.header('idempotent-replayed', 'true')
      return reply.code(answer.statusCode).send(answer.body as any)
    })
  }
}

export default loads
