import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { TransactionSchema, jitFundingOf } from '../src/marqeta.js'
import { decideJit } from '../src/jit/decide.js'
import { gatewayBatcher } from '../src/jit/batcher.js'
import type { JitStage } from '../src/metrics.js'

const JitResponseSchema = Type.Object({
  jit_funding: Type.Object({
    token: Type.String(),
    method: Type.String(),
    user_token: Type.String(),
    acting_user_token: Type.Optional(Type.String()),
    amount: Type.Number(),
    decline_reason: Type.Optional(Type.String()),
    memo: Type.Optional(Type.String()),
    balances: Type.Optional(Type.Record(Type.String(), Type.Object({
      currency_code: Type.String(), available_balance: Type.Number(), ledger_balance: Type.Number()
    })))
  })
})
const ErrorSchema = Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) })

declare module 'fastify' {
  interface FastifyRequest { jitTimer?: { last: number, started: number } }
  // Read by @fastify/under-pressure per route (its types do not declare it).
  interface FastifyContextConfig { pressureHandler?: (request: FastifyRequest, reply: FastifyReply, type: string, value: number | undefined) => Promise<void> | void }
}

/** Ends the current profiler stage of this request and starts the next one. */
function lap (request: FastifyRequest, stage: JitStage): void {
  const timer = request.jitTimer
  if (timer === undefined) return
  const now = performance.now()
  request.server.profiler.stage(stage, now - timer.last)
  timer.last = now
}

/** Marqeta's JIT funding gateway (DESIGN §4, contract). */
const jitRoutes: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { config, profiler } = app
  // Concurrent decisions share database calls (group commit); JIT_BATCH_MAX=1 sends each alone.
  const batcher = gatewayBatcher(app.db.pool, config)

  app.post('/marqeta/jit', {
    // Not shed by @fastify/under-pressure: a 503 makes Marqeta apply its stand-in rules, which may approve what the
    // ledger would refuse. Under load the gateway keeps deciding within JIT_DEADLINE_MS (or declines past it).
    config: { pressureHandler: () => {} },
    schema: {
      body: TransactionSchema,
      response: { 200: JitResponseSchema, 400: ErrorSchema, 401: ErrorSchema, 402: JitResponseSchema, 503: ErrorSchema }
    },
    onRequest: [
      async (request) => { const now = performance.now(); request.jitTimer = { started: now, last: now } },
      app.requireJitCredentials,
      async (request) => { lap(request, 'auth') }
    ],
    preHandler: async (request) => { lap(request, 'parse') },
    onResponse: async (request, reply) => {
      lap(request, 'respond')
      const timer = request.jitTimer
      if (timer !== undefined && reply.statusCode !== 401) profiler.request(timer.last - timer.started, request.log, { url: request.url, status: reply.statusCode })
    }
  }, async (request, reply) => {
    const txn = request.body
    const jit = jitFundingOf(txn)
    if (jit === undefined) {
      return reply.code(400).send({ statusCode: 400, error: 'Bad Request', message: 'body/gpa_order/jit_funding is required' })
    }
    const started = request.jitTimer?.started ?? performance.now()
    const answer = await decideJit({
      pool: app.db.pool,
      context: app.contextSource,
      now: () => new Date(),
      partialApproval: config.JIT_PARTIAL_APPROVAL,
      holdExpirationDays: config.HOLD_EXPIRATION_DAYS,
      stage: (stage) => lap(request, stage),
      ledger: batcher.decide
    }, txn, jit, started + config.JIT_DEADLINE_MS)
    if (!answer.replay) {
      // The approval rate is about decisions; informative messages (clearings, refunds, …) are only counted.
      if (answer.result === 'recorded') app.telemetry.jitDecisions.inc({ method: jit.method.slice(0, 80), result: 'recorded', reason: '' })
      else profiler.decision(jit.method, answer.result, answer.reason)
      if (answer.group === 'unknown') app.telemetry.jitUnknownMethods.inc({ method: jit.method.slice(0, 80) })
      if (answer.overdrawn) app.telemetry.ledgerOverdrawn.inc()
    }
    // The stored text is sent as is, so a replay is byte-for-byte the first answer.
    return reply.code(answer.statusCode).type('application/json; charset=utf-8').serializer((payload) => payload as string).send(answer.body as never)
  })
}

export default jitRoutes
