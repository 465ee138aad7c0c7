/**
 * What the service's own /metrics says about where a run's time went: per JIT stage, the share of requests whose
 * stage took longer than a few thresholds (from the histogram buckets), and the event loop's delay as prom-client
 * measures it. Cumulative since the service started (warm-up included).
 */
export interface StageTails {
  stages: Record<string, { count: number, meanMs: number, over: Record<string, number> }>
  eventLoopLagP99Ms?: number
  eventLoopLagMaxMs?: number
  gcSeconds?: number
}

const THRESHOLDS_S = ['0.005', '0.01', '0.025']

export async function stageTails (url: string): Promise<StageTails | undefined> {
  let text: string
  try {
    const res = await fetch(`${url}/metrics`)
    if (!res.ok) return undefined
    text = await res.text()
  } catch {
    return undefined
  }
  const stages: StageTails['stages'] = {}
  const stageOf = (name: string): StageTails['stages'][string] => (stages[name] ??= { count: 0, meanMs: 0, over: {} })
  const buckets = new Map<string, Map<string, number>>()
  const sum = new Map<string, number>()
  for (const line of text.split('\n')) {
    const m = /^jit_stage_duration_seconds_(bucket|sum|count)\{([^}]*)\} (\S+)$/.exec(line)
    if (m === null) continue
    const labels = Object.fromEntries([...m[2].matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]))
    const value = Number(m[3])
    if (m[1] === 'count') stageOf(labels.stage).count = value
    else if (m[1] === 'sum') sum.set(labels.stage, value)
    else (buckets.get(labels.stage) ?? buckets.set(labels.stage, new Map()).get(labels.stage)!).set(labels.le, value)
  }
  for (const [name, stage] of Object.entries(stages)) {
    stage.meanMs = stage.count > 0 ? (sum.get(name) ?? 0) * 1000 / stage.count : 0
    for (const le of THRESHOLDS_S) {
      const within = buckets.get(name)?.get(le)
      if (within !== undefined && stage.count > 0) stage.over[`${Number(le) * 1000} ms`] = (stage.count - within) / stage.count
    }
  }
  const gauge = (name: string): number | undefined => {
    const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
    return m === null ? undefined : Number(m[1])
  }
  const lagP99 = gauge('nodejs_eventloop_lag_p99_seconds')
  const lagMax = gauge('nodejs_eventloop_lag_max_seconds')
  const gc = [...text.matchAll(/^nodejs_gc_duration_seconds_sum\{[^}]*\} (\S+)$/gm)].reduce((a, m) => a + Number(m[1]), 0)
  return {
    stages,
    eventLoopLagP99Ms: lagP99 !== undefined ? lagP99 * 1000 : undefined,
    eventLoopLagMaxMs: lagMax !== undefined ? lagMax * 1000 : undefined,
    gcSeconds: gc
  }
}

export function describeStageTails (t: StageTails): string {
  const stages = Object.entries(t.stages).map(([name, s]) =>
    `${name} mean ${s.meanMs.toFixed(2)} ms, over 5/10/25 ms ${Object.values(s.over).map((f) => `${(f * 100).toFixed(1)}%`).join('/')}`)
  return `stages (service's histograms): ${stages.join('; ')}` +
    (t.eventLoopLagP99Ms !== undefined ? `; event-loop lag p99 ${t.eventLoopLagP99Ms.toFixed(1)} ms, max ${t.eventLoopLagMaxMs?.toFixed(1)} ms` : '') +
    (t.gcSeconds !== undefined ? `; GC ${(t.gcSeconds * 1000).toFixed(0)} ms in all` : '')
}
