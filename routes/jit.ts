import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { TransactionSchema, declineReasons, jitFundingOf } from '../src/marqeta.js'
import { decideJit } from '../src/jit/decide.js'
import { gatewayBatcher } from '../src/jit/batcher.js'
import { errorResponse, rejectDeepBody } from './schemas.js'
import { methodLabel, type JitStage } from '../src/metrics.js'

const JitResponseFields = Type.Object({
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

const jitRequestExample = {
  type: 'authorization',
  state: 'PENDING',
  token: 'txn-0001',
  user_token: 'alice',
  card_token: 'card-alice-1',
  amount: 12.5,
  currency_code: 'USD',
  card_acceptor: { mid: '000000000011111', mcc: '5411', name: 'Corner Grocery' },
  pos: { partial_approval_capable: false },
  gpa_order: { jit_funding: { token: 'jit-0001', method: 'pgfs.authorization', user_token: 'alice', amount: 12.5 } }
}

// The same fields as src/marqeta.ts's TransactionSchema (unknown fields accepted), with a documented example.
const JitRequestSchema = Type.Object(TransactionSchema.properties, {
  additionalProperties: true,
  description: 'A Marqeta transaction with gpa_order.jit_funding (or gpa_order_unload.jit_funding); Marqeta\'s other fields are accepted and ignored',
  examples: [jitRequestExample]
})

const JitApprovedSchema = Type.Object(JitResponseFields.properties, {
  description: 'Approved: amount is the approved amount. A balance inquiry (pgfs.balanceinquiry) answers balances here, with no ledger change. A replayed jit_funding.token gets the first answer byte for byte.',
  examples: [{ jit_funding: { token: 'jit-0001', method: 'pgfs.authorization', user_token: 'alice', amount: 12.5 } }]
})

const JitDeclinedSchema = Type.Object(JitResponseFields.properties, {
  description: `Declined: decline_reason is one of Marqeta's (${declineReasons.join(', ')}), memo the internal reason (e.g. the gateway's deadline passed); amount is the requested amount`,
  examples: [{ jit_funding: { token: 'jit-0002', method: 'pgfs.authorization', user_token: 'alice', amount: 250, decline_reason: 'INSUFFICIENT_FUNDS', memo: 'insufficient funds' } }]
})

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
  const batcher = gatewayBatcher(app.db.pool, config, { batchSize: app.telemetry.jitBatchSize, fallbacks: app.telemetry.jitBatchFallbacks })

  app.post('/marqeta/jit', {
    // Not shed by @fastify/under-pressure: a 503 makes Marqeta apply its stand-in rules, which may approve what the
    // ledger would refuse. Under load the gateway keeps deciding within JIT_DEADLINE_MS (or declines past it).
    config: { pressureHandler: () => {} },
    schema: {
      tags: ['marqeta'],
      summary: 'Marqeta JIT funding request',
      description: 'Marqeta asks to approve or decline a card transaction and waits 3 s at most; the gateway answers within JIT_DEADLINE_MS. Basic auth (and the custom header when JIT_CUSTOM_HEADER_NAME is set); wrong credentials record nothing.',
      body: JitRequestSchema,
      response: {
        200: JitApprovedSchema,
        400: errorResponse(400, 'Not a JIT request: malformed JSON, no jit_funding, an invalid field or a body nested too deep', 'body/gpa_order/jit_funding is required'),
        401: errorResponse(401, 'Missing or wrong Basic credentials (or custom header); nothing is recorded', 'valid JIT gateway credentials are required'),
        402: JitDeclinedSchema,
        503: errorResponse(503, 'PostgreSQL unreachable: not a decision, nothing recorded; Marqeta\'s stand-in rules apply')
      }
    },
    onRequest: [
      async (request) => { const now = performance.now(); request.jitTimer = { started: now, last: now } },
      app.requireJitCredentials,
      async (request) => { lap(request, 'auth') }
    ],
    preValidation: rejectDeepBody,
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
      if (answer.result === 'recorded') app.telemetry.jitDecisions.inc({ method: methodLabel(jit.method), result: 'recorded', reason: '' })
      else profiler.decision(jit.method, answer.result, answer.reason)
      if (answer.group === 'unknown') {
        // The metric cannot name it (any string would be a new series): the log line does.
        app.telemetry.jitUnknownMethods.inc({ method: methodLabel(jit.method) })
        request.log.warn({ method: jit.method.slice(0, 80) }, 'unknown JIT method')
      }
      if (answer.overdrawn) app.telemetry.ledgerOverdrawn.inc()
    }
    // The stored text is sent as is, so a replay is byte-for-byte the first answer.
    return reply.code(answer.statusCode).type('application/json; charset=utf-8').serializer((payload) => payload as string).send(answer.body as never)
  })
}

export default jitRoutes
