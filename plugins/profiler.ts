import fp from 'fastify-plugin'
import { jitStages, methodLabel, reasonLabel, type JitStage } from '../src/metrics.js'
import { SlidingPercentiles } from '../src/sliding-percentiles.js'

// /v1/jit/stats: the last 10 minutes, aged out two minutes at a time.
const STATS_WINDOW_MS = 600_000
const STATS_SLOTS = 5

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
 * The JIT profiler (DESIGN §9): stage histograms and decision counters in /metrics, and for /v1/jit/stats the
 * percentiles of the last 10 minutes per stage (HDR histograms, so that recording on the request path is a bucket
 * increment).
 */
export default fp(async (app) => {
  const { telemetry, config } = app
  const windows = new Map<JitStage | 'total', SlidingPercentiles>([...jitStages, 'total' as const].map((stage) => [stage, new SlidingPercentiles(STATS_WINDOW_MS, STATS_SLOTS)]))
  const counts = { approved: 0, declined: 0, overWarn: 0, overError: 0 }
  const stageCounts = new Map<string, number>()

  const profiler: Profiler = {
    stage (stage, ms) {
      const seconds = ms / 1000
      if (stage !== 'total') telemetry.jitStageDuration.observe({ stage }, seconds)
      windows.get(stage)?.record(ms * 1000)
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
      const stages = {} as ProfilerSnapshot['stages']
      for (const stage of [...jitStages, 'total'] as const) {
        const [p50, p95, p99] = windows.get(stage)!.percentiles([50, 95, 99]).map((us) => us === null ? null : us / 1000)
        stages[stage] = { count: stageCounts.get(stage) ?? 0, p50_ms: p50, p95_ms: p95, p99_ms: p99 }
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
