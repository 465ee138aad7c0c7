import fp from 'fastify-plugin'
import fastifyMetricsModule from 'fastify-metrics'
import { latencyBuckets } from '../src/metrics.js'

// fastify-metrics is CommonJS; under ESM its plugin sits on `.default` (TOOLING.md).
const fastifyMetrics = ((fastifyMetricsModule as any).default ?? fastifyMetricsModule) as typeof fastifyMetricsModule.default

/** `/metrics`: the route histogram of fastify-metrics plus the product's own registry (src/metrics.ts). */
export default fp(async (app) => {
  const registers = [app.telemetry.registry]
  await app.register(fastifyMetrics, {
    endpoint: '/metrics',
    defaultMetrics: { enabled: false },
    routeMetrics: {
      enabled: { histogram: true, summary: false },
      routeBlacklist: ['/metrics', '/health', '/ready'],
      overrides: { histogram: { buckets: latencyBuckets, registers }, summary: { registers } }
    }
  })
}, { name: 'metrics', dependencies: ['config'] })
