import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { getDecision, listDecisions } from '../../src/admin/transactions.js'
import { errors, finiteIntegers, ListOf, MarqetaTokenSchema, TimeSchema } from './schemas.js'

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
  response: Type.Unknown({ description: 'the exact JSON answered to Marqeta' })
}, { description: 'A JIT decision as recorded (the idempotency record)' })

const decisionExample = { jit_token: 'jit-0001', method: 'pgfs.authorization', result: 'approved', decline_reason: null, status_code: 200, amount: '12.50', currency_code: 'USD', user_token: 'alice', card_token: 'card-alice-1', transaction_token: 'txn-0001', created_time: '2026-01-15T10:00:00.000Z', response: { jit_funding: { token: 'jit-0001', method: 'pgfs.authorization', user_token: 'alice', amount: 12.5 } } }

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
  archive_status: Type.Union([Type.Literal('available'), Type.Literal('unavailable')], { description: 'unavailable when MongoDB could not be read: archived is then empty' })
})], {
  description: 'The decision, its hold and the archived Marqeta messages',
  examples: [{ ...decisionExample, hold: { jit_token: 'jit-0001', status: 'PENDING', amount: '12.50', remaining: '12.50', posted: '0.00', currency_code: 'USD', created_time: '2026-01-15T10:00:00.000Z', expires_at: '2026-01-22T10:00:00.000Z', resolved_at: null }, archived: [], archive_status: 'available' }]
})

/** JIT decisions as recorded (the idempotency record), with their hold and archived Marqeta messages. */
const transactions: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.get('/transactions', {
    preValidation: finiteIntegers('query', 'limit'),
    schema: {
      tags: ['transactions'],
      summary: 'List JIT decisions, newest first',
      querystring: Type.Object({
        user_token: Type.Optional(MarqetaTokenSchema),
        card_token: Type.Optional(MarqetaTokenSchema),
        limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 })
      }),
      response: { 200: ListOf(DecisionSchema, { examples: [{ data: [decisionExample] }] }), ...errors([400, 'Invalid filter or limit', 'querystring/limit must be <= 500', 'FST_ERR_VALIDATION'], 401) }
    }
  }, async (request) => ({ data: await listDecisions(db, request.query) }))

  app.get('/transactions/:jit_token', {
    schema: {
      tags: ['transactions'],
      summary: 'A JIT decision with its hold and archived messages',
      params: Type.Object({ jit_token: MarqetaTokenSchema }),
      response: { 200: DecisionDetailSchema, ...errors(400, 401, [404, 'No decision has this JIT token', 'transaction jit-0001 not found', 'NOT_FOUND']) }
    }
  }, async (request) => await getDecision(db, app.mongo?.db, request.params.jit_token))
}

export default transactions
