import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import { jitStages } from '../../src/metrics.js'

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

const StageStatsSchema = Type.Object({
  count: Type.Integer(),
  p50_ms: Nullable(Type.Number()),
  p95_ms: Nullable(Type.Number()),
  p99_ms: Nullable(Type.Number())
})

// Every stage is a required property, so a stage missing from the snapshot fails serialization instead of vanishing.
export const JitStatsSchema = Type.Object({
  stages: Type.Object(Object.fromEntries([...jitStages, 'total'].map((stage) => [stage, StageStatsSchema]))),
  decisions: Type.Object({
    total: Type.Integer(),
    approved: Type.Integer(),
    declined: Type.Integer(),
    approval_rate: Nullable(Type.Number())
  }),
  slow_requests: Type.Object({
    over_warn_ms: Type.Integer(),
    over_error_ms: Type.Integer(),
    warn_ms: Type.Integer(),
    error_ms: Type.Integer()
  })
})

const ErrorSchema = Type.Object({ statusCode: Type.Integer(), error: Type.String(), message: Type.String(), code: Type.Optional(Type.String()) })

/** `GET /v1/jit/stats` (DESIGN §6): the JIT profiler's snapshot, per-stage p50/p95/p99, approval rate, slow requests. */
const jitStats: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/jit/stats', {
    schema: { response: { 200: JitStatsSchema, 401: ErrorSchema } }
  }, async () => await app.profiler.snapshot())
}

export default jitStats
