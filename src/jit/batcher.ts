import type pg from 'pg'
import { pgErrors } from '../db.js'
import { callJitDecide, DEADLINE_MARGIN_MS, wallClockDeadline, withDeadline, type DecisionRow, type LedgerCall } from './ledger-call.js'

export interface BatcherOptions {
  /** Decisions per database call at most; 1 turns batching off. */
  maxBatch: number
  /** Batches running at once (each on its own connection). */
  maxInFlight: number
  /** Decisions waiting for a batch at most; past it a decision is answered as past its deadline at once. */
  maxQueue: number
  /** Lock wait allowed inside a batch before it gives up and its decisions run one by one. */
  lockTimeoutMs: number
  /**
   * A batch starts beside running ones only once the youngest of them has run this long, or when a full batch is
   * waiting (default 0: whenever a slot is free). Meanwhile arrivals gather into the next batch.
   */
  spareAfterMs?: number
  /** Instruments (src/metrics.ts's jitBatchSize and jitBatchFallbacks fit). */
  metrics?: {
    batchSize?: { observe: (size: number) => void }
    fallbacks?: { inc: (labels: { cause: string }) => void }
  }
}

interface Waiting {
  call: Record<string, unknown>
  deadlineAt: number
  resolve: (row: DecisionRow | undefined) => void
  reject: (err: unknown) => void
}

/** A second batch slot opens once the running batch has taken this long (docs/PERFORMANCE.md has the measurements). */
export const BATCH_SPARE_AFTER_MS = 5

// Program shards (schema/functions/program_account.sql): each batch takes the next one, so that the batches running
// at once update different shard rows.
const SHARDS = 64

/**
 * Group commit for JIT decisions (DESIGN §3): while `maxInFlight` batches are running, new decisions queue; the next
 * batch takes up to `maxBatch` of them into ONE jit_decide call (one round trip, one transaction, one WAL flush), which
 * locks their accounts in id order and one program shard last, so batches never deadlock. A decision that finds
 * nothing running goes alone at once, so an idle gateway adds no wait. A decision whose cardholder account a running
 * batch holds waits for that batch to end instead of starting another that would queue on the account's lock: on a
 * hot account the decisions arriving meanwhile then share the next batch. A further slot opens once the running
 * batch has taken `spareAfterMs` (or a full batch waits): arrivals during a short batch share the next call, and one
 * batch waiting on a lock held elsewhere (a webhook's effect, an admin move) does not hold every decision of the
 * process. Informative messages (which apply webhook-like effects with their own locks) always go alone. If a
 * batch fails (a lock held past `lockTimeoutMs`, a bad item), nothing of it was committed and each of its decisions
 * runs alone within its own deadline.
 */
export class JitBatcher {
  private readonly queue: Waiting[] = []
  /** The running batches, each with when it started (performance.now()). */
  private readonly running = new Map<object, number>()
  private spareTimer: NodeJS.Timeout | undefined
  /** Cardholder accounts ("user|currency") of the running batches, with how many of them hold each. */
  private readonly busy = new Map<string, number>()
  private nextShard = Math.floor(Math.random() * SHARDS)

  constructor (private readonly pool: pg.Pool, private readonly single: LedgerCall, private readonly opts: BatcherOptions) {}

  readonly decide: LedgerCall = async (call, deadlineAt) => {
    if (call.mode === 'effect') return await this.single(call, deadlineAt)
    // Past the bound the wait alone would spend the deadline: the decision is declined now rather than late.
    if (this.queue.length >= this.opts.maxQueue) return undefined
    return await new Promise((resolve, reject) => {
      this.queue.push({ call, deadlineAt, resolve, reject })
      this.pump()
    })
  }

  /** Decisions waiting for a batch (a gauge for /metrics). */
  get waiting (): number { return this.queue.length }

  private pump (): void {
    while (this.running.size < this.opts.maxInFlight && this.queue.length > 0) {
      if (!this.slotOpen()) return
      const batch = this.takeBatch()
      // Everything waiting needs an account a running batch holds: it goes when that batch ends.
      if (batch.length === 0) return
      const accounts = [...new Set(batch.map((w) => accountOf(w.call)).filter((a) => a !== undefined))]
      for (const a of accounts) this.busy.set(a, (this.busy.get(a) ?? 0) + 1)
      const batchKey = {}
      this.running.set(batchKey, performance.now())
      void this.run(batch).finally(() => {
        for (const a of accounts) {
          const n = this.busy.get(a)! - 1
          if (n === 0) this.busy.delete(a)
          else this.busy.set(a, n)
        }
        this.running.delete(batchKey)
        this.pump()
      })
    }
  }

  /**
   * Whether another batch may start now. With one running, waiting a little for it gathers the arrivals into one
   * call instead of paying a round trip and a commit for each; a batch slow to finish (a lock held elsewhere) opens
   * the next slot once it has run `spareAfterMs`, so it never holds every decision of the process.
   */
  private slotOpen (): boolean {
    const spareAfterMs = this.opts.spareAfterMs ?? 0
    if (this.running.size === 0 || spareAfterMs === 0 || this.queue.length >= this.opts.maxBatch) return true
    const youngest = Math.max(...this.running.values())
    const wait = Math.ceil(youngest + spareAfterMs - performance.now())
    if (wait <= 0) return true
    if (this.spareTimer === undefined) {
      this.spareTimer = setTimeout(() => { this.spareTimer = undefined; this.pump() }, wait)
      this.spareTimer.unref()
    }
    return false
  }

  /**
   * The next batch in arrival order; a token already in it (a concurrent retry) waits for the next batch, and so does
   * a decision on an account a running batch holds.
   */
  private takeBatch (): Waiting[] {
    const batch: Waiting[] = []
    const tokens = new Set<unknown>()
    for (let i = 0; i < this.queue.length && batch.length < this.opts.maxBatch;) {
      const token = (this.queue[i].call.echo as { token?: unknown } | undefined)?.token
      const account = accountOf(this.queue[i].call)
      if (tokens.has(token) || (account !== undefined && this.busy.has(account))) { i++; continue }
      tokens.add(token)
      batch.push(this.queue.splice(i, 1)[0])
    }
    return batch
  }

  private async run (batch: Waiting[]): Promise<void> {
    const live = batch.filter((w) => {
      if (w.deadlineAt > performance.now()) return true
      w.resolve(undefined)
      return false
    })
    if (live.length === 0) return
    this.opts.metrics?.batchSize?.observe(live.length)
    if (live.length > 1) {
      const rows = await this.together(live).catch((err) => {
        this.opts.metrics?.fallbacks?.inc({ cause: fallbackCause(err) })
        return undefined
      })
      if (rows !== undefined) {
        live.forEach((w, i) => w.resolve(rows[i]))
        return
      }
    }
    await Promise.all(live.map(async (w) => { await this.single(w.call, w.deadlineAt).then(w.resolve, w.reject) }))
  }

  private async together (batch: Waiting[]): Promise<DecisionRow[]> {
    // A pool too busy to hand out a connection before the first deadline: each decision takes its own path then.
    const client = await withDeadline(this.pool.connect(), Math.min(...batch.map((w) => w.deadlineAt)), (late) => late.release())
    this.nextShard = (this.nextShard + 1) % SHARDS
    try {
      const { rows } = await client.query<DecisionRow & { i: number }>({
        name: 'jit-decide-batch',
        text: 'SELECT i, status_code, response, replay, overdrawn FROM jit_decide($1::jsonb[], $2, $3, $4)',
        values: [batch.map((w) => ({ ...w.call, deadline_ms: wallClockDeadline(w.deadlineAt) })), this.nextShard, this.opts.lockTimeoutMs, DEADLINE_MARGIN_MS]
      })
      const byIndex = new Map(rows.map(({ i, ...row }) => [Number(i), row]))
      return batch.map((_w, k) => {
        const row = byIndex.get(k + 1)
        if (row === undefined) throw new Error(`batch answered no row for item ${k + 1}`)
        return row
      })
    } finally {
      client.release()
    }
  }
}

/** The cardholder account a decision would lock ("user|currency"), for one that may move money; else undefined. */
function accountOf (call: Record<string, unknown>): string | undefined {
  const effect = call.effect as { user_token?: unknown, currency_code?: unknown } | undefined
  if (call.mode !== 'decide' || call.decline_reason !== undefined || effect === undefined) return undefined
  return `${String(effect.user_token)}|${String(effect.currency_code)}`
}

/** Why a batch failed, as a bounded label: a lock wait past its timeout, a token decided meanwhile, a deadline passed. */
function fallbackCause (err: unknown): string {
  const code = (err as { code?: string })?.code
  if (code === pgErrors.lockNotAvailable) return 'lock'
  if (code === pgErrors.uniqueViolation) return 'token'
  if (code === pgErrors.queryCanceled) return 'deadline'
  return 'error'
}

/**
 * The gateway's batcher (the JIT route's, and the bench's ledger-only route's): up to JIT_BATCH_MAX decisions per
 * call, JIT_BATCH_CONCURRENCY calls at once, and a decision alone through callJitDecide.
 */
export function gatewayBatcher (pool: pg.Pool, config: { JIT_BATCH_MAX: number, JIT_BATCH_CONCURRENCY: number, JIT_BATCH_QUEUE_MAX: number, JIT_DEADLINE_MS: number }, metrics?: BatcherOptions['metrics']): JitBatcher {
  return new JitBatcher(pool, (call, deadlineAt) => callJitDecide(pool, call, deadlineAt), {
    maxBatch: config.JIT_BATCH_MAX,
    maxInFlight: config.JIT_BATCH_CONCURRENCY,
    maxQueue: config.JIT_BATCH_QUEUE_MAX,
    // A batch waits on other batches' commits only (sorted locks: never a cycle); a longer wait is a stuck lock.
    lockTimeoutMs: Math.max(50, Math.floor(config.JIT_DEADLINE_MS / 3)),
    spareAfterMs: BATCH_SPARE_AFTER_MS,
    metrics
  })
}
