import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type, type TSchema } from '@sinclair/typebox'
import { jitStages } from '../../src/metrics.js'
import { errors } from './schemas.js'

const Nullable = <T extends TSchema>(schema: T) => Type.Union([schema, Type.Null()])

const StageStatsSchema = Type.Object({
  count: Type.Integer(),
  p50_ms: Nullable(Type.Number()),
  p95_ms: Nullable(Type.Number()),
  p99_ms: Nullable(Type.Number())
})

// Every stage is a required property, so a stage missing from the snapshot fails serialization instead of vanishing.
const stageExample = { count: 1200, p50_ms: 0.21, p95_ms: 0.48, p99_ms: 0.9 }

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
}, {
  description: 'Every stage is listed even before traffic (count 0, percentiles null)',
  examples: [{
    stages: Object.fromEntries([...jitStages, 'total'].map((stage) => [stage, stageExample])),
    decisions: { total: 1200, approved: 1150, declined: 50, approval_rate: 0.958 },
    slow_requests: { over_warn_ms: 0, over_error_ms: 0, warn_ms: 50, error_ms: 100 }
  }]
})

/** `GET /v1/jit/stats` (DESIGN §6): the JIT profiler's snapshot, per-stage p50/p95/p99, approval rate, slow requests. */
const jitStats: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  app.get('/jit/stats', {
    schema: {
      tags: ['operations'],
      summary: 'JIT profiler snapshot',
      description: 'Per-stage p50/p95/p99 in ms since start, decisions and approval rate, slow-request counts.',
      response: { 200: JitStatsSchema, ...errors(401) }
    }
  }, async () => await app.profiler.snapshot())
}

export default jitStats
