import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { moveFunds, type FundsDirection } from '../../src/admin/funds.js'
import { AmountSchema, BalancesSchema, CurrencyCodeSchema, ErrorSchema, errors, TokenParamsSchema } from './schemas.js'

const FundsSchema = Type.Object({
  token: Type.String(),
  user_token: Type.String(),
  amount: Type.String(),
  currency_code: Type.String(),
  balances: Type.Record(Type.String({ pattern: '^[A-Z]{3}$' }), BalancesSchema)
})

const schema = {
  params: TokenParamsSchema,
  headers: Type.Object({ 'idempotency-key': Type.String({ minLength: 1, maxLength: 255 }) }),
  body: Type.Object({ amount: AmountSchema, currency_code: CurrencyCodeSchema }),
  response: { 201: FundsSchema, 409: ErrorSchema, ...errors(400, 401, 404, 422) }
}

/** POST /users/:token/loads and /unloads (DESIGN §6): idempotent by the Idempotency-Key header, per route and user. */
const loads: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  for (const direction of ['loads', 'unloads'] as FundsDirection[]) {
    app.post(`/users/:token/${direction}`, { schema }, async (request, reply) => {
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
