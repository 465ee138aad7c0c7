import fp from 'fastify-plugin'
import client from 'prom-client'
import { jitStages, methodLabel, reasonLabel, type JitStage } from '../src/metrics.js'

export interface StageStats { count: number, p50_ms: number | null, p95_ms: number | null, p99_ms: number | null }
export interface ProfilerSnapshot {
  stages: Record<JitStage | 'total', StageStats>
  decisions: { total: number, approved: number, declined: number, approval_rate: number | null }
  slow_requests: { over_warn_ms: number, over_error_ms: number, warn_ms: number, error_ms: number }
}

export interface Profiler {
  stage: (stage: JitStage | 'total', ms: number) => void
  decision: (method: string, result: 'approved' | 'declined', reason: string | undefined) => void
  request: (totalMs: number, log: { warn: (o: object, m: string) => void, error: (o: object, m: string) => void }, detail: object) => void
  snapshot: () => Promise<ProfilerSnapshot>
}

declare module 'fastify' {
  interface FastifyInstance {
    profiler: Profiler
  }
}

/**
 * The JIT profiler (DESIGN §9): stage histograms and decision counters in /metrics, and for /v1/jit/stats
 * sliding-window percentiles from prom-client summaries (kept in a private registry, not exported twice).
 */
export default fp(async (app) => {
  const { telemetry, config } = app
  const summaries = new client.Registry()
  const stageSummary = new client.Summary({
    name: 'jit_stage_summary_seconds',
    help: 'JIT stage durations for /v1/jit/stats',
    labelNames: ['stage'],
    percentiles: [0.5, 0.95, 0.99],
    maxAgeSeconds: 600,
    ageBuckets: 5,
    registers: [summaries]
  })
  const counts = { approved: 0, declined: 0, overWarn: 0, overError: 0 }
  const stageCounts = new Map<string, number>()

  const profiler: Profiler = {
    stage (stage, ms) {
      const seconds = ms / 1000
      if (stage !== 'total') telemetry.jitStageDuration.observe({ stage }, seconds)
      stageSummary.observe({ stage }, seconds)
      stageCounts.set(stage, (stageCounts.get(stage) ?? 0) + 1)
    },
    decision (method, result, reason) {
      counts[result]++
      telemetry.jitDecisions.inc({ method: methodLabel(method), result, reason: reasonLabel(reason) })
      telemetry.jitApprovalRate.set(counts.approved / (counts.approved + counts.declined))
    },
    request (totalMs, log, detail) {
      profiler.stage('total', totalMs)
      if (totalMs > config.JIT_SLOW_ERROR_MS) {
        counts.overError++
        counts.overWarn++
        telemetry.jitSlowRequests.inc({ threshold: String(config.JIT_SLOW_ERROR_MS) })
        telemetry.jitSlowRequests.inc({ threshold: String(config.JIT_SLOW_WARN_MS) })
        log.error({ ms: Math.round(totalMs), ...detail }, 'very slow JIT decision')
      } else if (totalMs > config.JIT_SLOW_WARN_MS) {
        counts.overWarn++
        telemetry.jitSlowRequests.inc({ threshold: String(config.JIT_SLOW_WARN_MS) })
        log.warn({ ms: Math.round(totalMs), ...detail }, 'slow JIT decision')
      }
    },
    async snapshot () {
      const values = (await stageSummary.get()).values
      const stages = {} as ProfilerSnapshot['stages']
      for (const stage of [...jitStages, 'total'] as const) {
        const q = (quantile: number): number | null => {
          const v = values.find((x) => x.labels.stage === stage && (x.labels as Record<string, unknown>).quantile === quantile)?.value
          return v === undefined || Number.isNaN(v) ? null : Math.round(v * 1e6) / 1e3
        }
        stages[stage] = { count: stageCounts.get(stage) ?? 0, p50_ms: q(0.5), p95_ms: q(0.95), p99_ms: q(0.99) }
      }
      const total = counts.approved + counts.declined
      return {
        stages,
        decisions: { total, approved: counts.approved, declined: counts.declined, approval_rate: total === 0 ? null : counts.approved / total },
        slow_requests: { over_warn_ms: counts.overWarn, over_error_ms: counts.overError, warn_ms: config.JIT_SLOW_WARN_MS, error_ms: config.JIT_SLOW_ERROR_MS }
      }
    }
  }
  app.decorate('profiler', profiler)
}, { name: 'profiler', dependencies: ['config'] })
