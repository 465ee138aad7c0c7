import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { getDecision, listDecisions } from '../../src/admin/transactions.js'
import { errors, ListOf, TimeSchema } from './schemas.js'

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()])

const DecisionSchema = Type.Object({
  jit_token: Type.String(),
  method: Type.String(),
  result: Type.String(),
  decline_reason: Nullable(Type.String()),
  status_code: Type.Integer(),
  amount: Nullable(Type.String()),
  currency_code: Nullable(Type.String()),
  user_token: Nullable(Type.String()),
  card_token: Nullable(Type.String()),
  transaction_token: Nullable(Type.String()),
  created_time: TimeSchema,
  response: Type.Unknown()
})

const HoldSchema = Type.Object({
  jit_token: Type.String(),
  status: Type.String(),
  amount: Type.String(),
  remaining: Type.String(),
  posted: Type.String(),
  currency_code: Type.String(),
  created_time: TimeSchema,
  expires_at: TimeSchema,
  resolved_at: Nullable(TimeSchema)
})

const DecisionDetailSchema = Type.Composite([DecisionSchema, Type.Object({
  hold: Nullable(HoldSchema),
  archived: Type.Array(Type.Unknown()),
  archive_status: Type.Union([Type.Literal('available'), Type.Literal('unavailable')])
})])

/** JIT decisions as recorded (the idempotency record), with their hold and archived Marqeta messages. */
const transactions: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.get('/transactions', {
    schema: {
      querystring: Type.Object({
        user_token: Type.Optional(Type.String({ minLength: 1 })),
        card_token: Type.Optional(Type.String({ minLength: 1 })),
        limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 })
      }),
      response: { 200: ListOf(DecisionSchema), ...errors(400, 401) }
    }
  }, async (request) => ({ data: await listDecisions(db, request.query) }))

  app.get('/transactions/:jit_token', {
    schema: {
      params: Type.Object({ jit_token: Type.String({ minLength: 1, maxLength: 255 }) }),
      response: { 200: DecisionDetailSchema, ...errors(400, 401, 404) }
    }
  }, async (request) => await getDecision(db, app.mongo?.db, request.params.jit_token))
}

export default transactions
