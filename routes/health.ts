import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'

const Dependency = Type.Object({ status: Type.Union([Type.Literal('up'), Type.Literal('down')]) }, { additionalProperties: true })
const HealthSchema = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('down')]),
  postgres: Dependency,
  redis: Dependency,
  mongodb: Dependency,
  rabbitmq: Dependency
})
const ReadySchema = Type.Object({ ready: Type.Boolean(), reason: Type.Optional(Type.String()) })

// The probes are never shed by @fastify/under-pressure: /ready reports pressure itself, /health reports the stores.
const notShed = { pressureHandler: () => {} }

/** Unauthenticated probes (DESIGN §9); nginx does not expose them outside. */
const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', { config: notShed, schema: { response: { 200: HealthSchema, 503: HealthSchema } } }, async (_request, reply) => {
    const report = await app.checkHealth()
    return reply.code(report.postgres.status === 'up' ? 200 : 503).send(report)
  })

  app.get('/ready', { config: notShed, schema: { response: { 200: ReadySchema, 503: ReadySchema } } }, async (_request, reply) => {
    if (app.isUnderPressure()) return reply.code(503).send({ ready: false, reason: 'under pressure' })
    if (!(await app.postgresUsable())) return reply.code(503).send({ ready: false, reason: 'postgres unavailable' })
    return { ready: true }
  })
}

export default healthRoutes
