import { parentPort, workerData } from 'node:worker_threads'
import { Pool } from 'undici'
import { jitMessage, merchants } from './messages.js'

/**
 * An open-loop JIT load generator, run in worker threads by bench/latency.ts. Request k of a run is due at
 * startAt + k / rate and is sent then, whatever became of the earlier ones; its latency is measured from that due
 * time, not from the moment it was sent, so a stalled service or a late timer shows in the figures instead of
 * silently lowering the rate (coordinated omission). With T threads, thread i sends the requests k ≡ i (mod T).
 * A worker keeps its keep-alive pool across runs, so the measured run reuses the warm-up's connections.
 */

export interface GeneratorSetup { url: string, connections: number, timeoutMs: number, headers: Record<string, string>, pairs: Array<[string, string]> }

export interface OpenLoopJob {
  /** Absolute time (performance.timeOrigin + performance.now(), ms) when request 0 is due. */
  startAt: number
  rate: number
  /** Requests in the run, over all threads. */
  count: number
  threads: number
  index: number
  tokenPrefix: string
  minMinor: number
  maxMinor: number
  /** Past this many requests in flight in this thread, a due request is not sent and counts as an error. */
  maxInFlight: number
}

export interface OpenLoopResult {
  sent: number
  /** ms from the due time to the end of the response body, one per response. */
  latencies: Float64Array<ArrayBuffer>
  responses: number
  /** ms from the due time to the call that sends it. */
  sendLags: Float64Array<ArrayBuffer>
  statuses: Record<string, number>
  /** Requests that got no response, by error code. */
  errors: Record<string, number>
  /** Absolute time of the last response or error. */
  lastAt: number
  /** The first answer other than 200 or 402. */
  sample?: { status: number, body: string }
}

export type ToWorker = { type: 'run', job: OpenLoopJob } | { type: 'close' }
export type FromWorker = { type: 'ready' } | { type: 'done', result: OpenLoopResult } | { type: 'failed', error: string } | { type: 'closed' }

/** A clock comparable across threads: each thread's performance.now() has its own origin. */
export const clock = (): number => performance.timeOrigin + performance.now()

async function run (pool: Pool, setup: GeneratorSetup, job: OpenLoopJob): Promise<OpenLoopResult> {
  const intervalMs = 1000 / job.rate
  const due = (k: number): number => job.startAt + k * intervalMs
  const mine = Math.ceil(Math.max(0, job.count - job.index) / job.threads)
  const latencies = new Float64Array(mine)
  const sendLags = new Float64Array(mine)
  const statuses: Record<string, number> = {}
  const errors: Record<string, number> = {}
  let sent = 0
  let responses = 0
  let inFlight = 0
  let lastAt = job.startAt
  let sample: OpenLoopResult['sample']
  const { pairs } = setup

  return await new Promise((resolve) => {
    let scheduled = false
    const finish = (): void => {
      if (scheduled && inFlight === 0) {
        resolve({ sent, latencies: latencies.slice(0, responses), responses, sendLags: sendLags.slice(0, sent), statuses, errors, lastAt, sample })
      }
    }
    const send = (k: number, dueAt: number): void => {
      if (inFlight >= job.maxInFlight) {
        errors['too many in flight (not sent)'] = (errors['too many in flight (not sent)'] ?? 0) + 1
        return
      }
      const [userToken, cardToken] = pairs[Math.floor(Math.random() * pairs.length)]
      const body = JSON.stringify(jitMessage({
        method: 'pgfs.authorization',
        jitToken: `${job.tokenPrefix}${k}`,
        transactionToken: `t${job.tokenPrefix}${k}`,
        userToken,
        cardToken,
        amountMinor: job.minMinor + Math.floor(Math.random() * (job.maxMinor - job.minMinor + 1)),
        merchant: merchants[k % merchants.length]
      }))
      sendLags[sent++] = clock() - dueAt
      inFlight++
      pool.request({ path: '/marqeta/jit', method: 'POST', headers: setup.headers, body })
        .then(async (res) => {
          const text = await res.body.text()
          const end = clock()
          latencies[responses++] = end - dueAt
          statuses[res.statusCode] = (statuses[res.statusCode] ?? 0) + 1
          if (sample === undefined && res.statusCode !== 200 && res.statusCode !== 402) sample = { status: res.statusCode, body: text.slice(0, 400) }
        })
        .catch((err: NodeJS.ErrnoException) => {
          const code = err.code ?? err.name
          errors[code] = (errors[code] ?? 0) + 1
        })
        .finally(() => {
          inFlight--
          lastAt = clock()
          finish()
        })
    }
    let k = job.index
    // A timer per due request would be late by its own granularity anyway; each tick sends every request already due.
    const tick = (): void => {
      const now = clock()
      while (k < job.count && due(k) <= now) {
        send(k, due(k))
        k += job.threads
      }
      if (k >= job.count) {
        scheduled = true
        finish()
        return
      }
      setTimeout(tick, Math.max(0, due(k) - clock()))
    }
    setTimeout(tick, Math.max(0, job.startAt - clock()))
  })
}

if (parentPort !== null) {
  const port = parentPort
  const setup = workerData as GeneratorSetup
  const pool = new Pool(setup.url, {
    connections: setup.connections,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: setup.timeoutMs,
    bodyTimeout: setup.timeoutMs
  })
  port.on('message', (m: ToWorker) => {
    if (m.type === 'close') {
      void pool.close().finally(() => { port.postMessage({ type: 'closed' } satisfies FromWorker); port.close() })
      return
    }
    run(pool, setup, m.job).then(
      (result) => port.postMessage({ type: 'done', result } satisfies FromWorker, [result.latencies.buffer, result.sendLags.buffer]),
      (err: Error) => port.postMessage({ type: 'failed', error: err.stack ?? err.message } satisfies FromWorker)
    )
  })
  port.postMessage({ type: 'ready' } satisfies FromWorker)
}
