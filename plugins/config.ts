import fp from 'fastify-plugin'
import type { Config } from '../src/config.js'
import { createMetrics, type Metrics } from '../src/metrics.js'

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
    telemetry: Metrics
  }
}

/** The validated configuration and the instance's metric registry: everything else depends on these two. */
export default fp<{ config: Config }>(async (app, { config }) => {
  app.decorate('config', config)
  app.decorate('telemetry', createMetrics())
}, { name: 'config' })
