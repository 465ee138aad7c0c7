import type { FastifyPluginAsync } from 'fastify'
import { Type } from '@sinclair/typebox'

const up = { status: 'up', latency_ms: 0.4 }

const Dependency = Type.Object({ status: Type.Union([Type.Literal('up'), Type.Literal('down')]) }, { additionalProperties: true })
const HealthSchema = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('degraded'), Type.Literal('down')]),
  postgres: Dependency,
  redis: Dependency,
  mongodb: Dependency,
  rabbitmq: Dependency
}, { examples: [{ status: 'ok', postgres: { ...up, relay_backlog: 0, relay_lag_seconds: 0, relay_active: true }, redis: up, mongodb: up, rabbitmq: up }] })
const ReadySchema = Type.Object({ ready: Type.Boolean(), reason: Type.Optional(Type.String()) })
const Ready = Type.Object(ReadySchema.properties, { description: 'Ready: PostgreSQL usable and the process not under pressure', examples: [{ ready: true }] })
const NotReady = Type.Object(ReadySchema.properties, { description: 'Not ready: PostgreSQL unusable or the process under pressure', examples: [{ ready: false, reason: 'postgres unavailable' }] })
const Healthy = Type.Object(HealthSchema.properties, { description: 'The decision path works (PostgreSQL up); Redis, MongoDB or RabbitMQ down make it degraded', examples: HealthSchema.examples })
const Unhealthy = Type.Object(HealthSchema.properties, {
  description: 'PostgreSQL is down: no decisions',
  examples: [{ status: 'down', postgres: { status: 'down', latency_ms: 1000, error: 'timed out' }, redis: up, mongodb: up, rabbitmq: up }]
})
const probe = { tags: ['operations'] }

// The probes are never shed by @fastify/under-pressure: /ready reports pressure itself, /health reports the stores.
const notShed = { pressureHandler: () => {} }

/** Unauthenticated probes (DESIGN §9); nginx does not expose them outside. */
const healthRoutes: FastifyPluginAsync = async (app) => {
  app.get('/health', { config: notShed, schema: { ...probe, summary: 'Dependencies, pools and the event backlog (no credentials)', response: { 200: Healthy, 503: Unhealthy } } }, async (_request, reply) => {
    const report = await app.checkHealth()
    return reply.code(report.postgres.status === 'up' ? 200 : 503).send(report)
  })

  app.get('/ready', { config: notShed, schema: { ...probe, summary: 'Readiness for the load balancer (no credentials)', response: { 200: Ready, 503: NotReady } } }, async (_request, reply) => {
    if (app.isUnderPressure()) return reply.code(503).send({ ready: false, reason: 'under pressure' })
    if (!(await app.postgresUsable())) return reply.code(503).send({ ready: false, reason: 'postgres unavailable' })
    return { ready: true }
  })
}

export default healthRoutes
