import { parentPort, workerData } from 'node:worker_threads'
import autocannon from 'autocannon'
import { Samples, type LatencySummary } from './stats.js'
import { jitMessage, merchants } from './messages.js'

/**
 * The load generator runs in its own thread so that autocannon does not share the event loop of the service it
 * measures (the service runs in the main thread of the bench process). Request bodies are built here, one per request,
 * because functions cannot cross threads.
 */

export type Scenario =
  | { type: 'static', method: 'GET' | 'POST', path: string, headers: Record<string, string>, body?: string }
  /** JIT requests over (user, card) pairs, a fresh jit_funding token per request. */
  | { type: 'jit', method: string, pairs: Array<[string, string]>, path: string, tokenPrefix: string, headers: Record<string, string>, minMinor: number, maxMinor: number }
  /** GET pathPrefix + a random token. */
  | { type: 'tokens', pathPrefix: string, tokens: string[], headers: Record<string, string> }

export interface LoadJob { url: string, connections: number, durationS: number, scenario: Scenario }

export interface LoadResult {
  requests: number
  durationS: number
  reqPerSec: number
  statuses: Record<string, number>
  errors: number
  timeouts: number
  latency: LatencySummary
  autocannon: { p50: number, p99: number, mean: number }
  sample?: { status: number, body: string }
}

function setupFor (scenario: Scenario): autocannon.Request {
  if (scenario.type === 'static') {
    return { method: scenario.method, path: scenario.path, headers: scenario.headers, body: scenario.body }
  }
  if (scenario.type === 'tokens') {
    const { tokens, pathPrefix } = scenario
    return {
      method: 'GET',
      headers: scenario.headers,
      setupRequest: (request) => {
        request.path = pathPrefix + tokens[Math.floor(Math.random() * tokens.length)]
        return request
      }
    }
  }
  const { pairs, tokenPrefix, method, minMinor, maxMinor } = scenario
  let seq = 0
  return {
    method: 'POST',
    path: scenario.path,
    headers: scenario.headers,
    setupRequest: (request) => {
      const [userToken, cardToken] = pairs[Math.floor(Math.random() * pairs.length)]
      const n = seq++
      request.body = JSON.stringify(jitMessage({
        method,
        jitToken: `${tokenPrefix}${n}`,
        transactionToken: `t${tokenPrefix}${n}`,
        userToken,
        cardToken,
        amountMinor: method === 'pgfs.balanceinquiry' ? 0 : minMinor + Math.floor(Math.random() * (maxMinor - minMinor + 1)),
        merchant: merchants[n % merchants.length]
      }))
      return request
    }
  }
}

async function run (job: LoadJob): Promise<LoadResult> {
  const samples = new Samples()
  let sample: LoadResult['sample']
  const request = setupFor(job.scenario)
  request.onResponse = (status, body) => {
    if (sample === undefined || (sample.status < 300 && status >= 300)) sample = { status, body: body.slice(0, 400) }
  }
  const started = performance.now()
  const instance = autocannon({
    url: job.url,
    connections: job.connections,
    pipelining: 1,
    duration: job.durationS,
    timeout: 10,
    requests: [request]
  })
  // autocannon emits (client, statusCode, bytes, responseTime); the response time is fractional (process.hrtime).
  ;(instance as unknown as { on: (e: string, f: (...args: unknown[]) => void) => void }).on('response', (_client, _status, _bytes, responseTime) => {
    samples.add(responseTime as number)
  })
  const raw = await instance
  // In a worker thread autocannon hands back the raw per-thread result; aggregate it as its main thread would.
  const aggregate = (autocannon as unknown as { aggregateResult: (r: unknown[], o: object) => autocannon.Result }).aggregateResult
  const result = (raw as { latency?: unknown }).latency === undefined ? aggregate([raw], { url: job.url, connections: job.connections, duration: job.durationS }) : raw
  const durationS = (performance.now() - started) / 1000
  const statuses: Record<string, number> = {}
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {}) as Array<[string, { count: number }]>) statuses[code] = count
  const total = Object.values(statuses).reduce((a, b) => a + b, 0)
  return {
    requests: total,
    durationS,
    reqPerSec: total / result.duration,
    statuses,
    errors: result.errors,
    timeouts: result.timeouts,
    latency: samples.summary(),
    autocannon: { p50: result.latency.p50, p99: result.latency.p99, mean: result.latency.average },
    sample
  }
}

if (parentPort !== null) {
  run(workerData as LoadJob).then(
    (result) => parentPort!.postMessage({ ok: true, result }),
    (err: Error) => parentPort!.postMessage({ ok: false, error: err.stack ?? err.message })
  )
}
