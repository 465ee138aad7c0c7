import type pg from 'pg'
import { callJitDecide, withDeadline } from './decide.js'

export interface DecisionRow { status_code: number, response: string, replay: boolean, overdrawn?: boolean }

/** One decision's money-moving call: the argument of jit_decide, answered by its row or undefined past the deadline. */
export type LedgerCall = (call: Record<string, unknown>, deadlineAt: number) => Promise<DecisionRow | undefined>

// Longer waits inside a batch mean a hot or locked account: its decisions are better off alone, each with its deadline.
const BATCH_LOCK_TIMEOUT_MS = 50

export interface BatcherOptions {
  /** Decisions per database call at most; 1 turns batching off. */
  maxBatch: number
  /** Batches running at once (each on its own connection). */
  maxInFlight: number
  /** Lock wait allowed inside a batch before it gives up and its decisions run one by one. */
  lockTimeoutMs: number
}

interface Waiting {
  call: Record<string, unknown>
  deadlineAt: number
  resolve: (row: DecisionRow | undefined) => void
  reject: (err: unknown) => void
}

// Items run in this order inside the batch's one transaction: by program-account shard (the shard function of
// program_account()), then by user. The user's account is locked before its shard, so batches running at the same
// time can still wait on each other in a cycle; the short lock_timeout turns that into a fallback, not a 1 s deadlock
// detection. OFFSET 0 keeps the sort below the lateral calls.
const BATCH_SQL = `SELECT s.i, r.* FROM (
    SELECT x.p, x.i FROM unnest($1::jsonb[]) WITH ORDINALITY AS x(p, i)
     ORDER BY abs(hashtext(coalesce(x.p->'echo'->>'user_token', ''))) % 64, x.p->'echo'->>'user_token', x.i OFFSET 0) s
  CROSS JOIN LATERAL jit_decide(s.p) r`

/**
 * Group commit for JIT decisions: while `maxInFlight` batches are running, new decisions queue; the next batch takes up
 * to `maxBatch` of them into ONE jit_decide statement (one round trip, one transaction, one WAL flush). A decision that
 * finds nothing running goes alone at once, so an idle gateway adds no wait. If a batch fails for any reason (a lock
 * held past `lockTimeoutMs`, a deadlock, a bad item), nothing of it was committed and each of its decisions runs alone
 * through `single`, within its own deadline: the answers are those the decisions would have had without batching.
 */
export class JitBatcher {
  private readonly queue: Waiting[] = []
  private inFlight = 0

  constructor (private readonly pool: pg.Pool, private readonly single: LedgerCall, private readonly opts: BatcherOptions) {}

  readonly decide: LedgerCall = (call, deadlineAt) => new Promise((resolve, reject) => {
    this.queue.push({ call, deadlineAt, resolve, reject })
    this.pump()
  })

  private pump (): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch)
      this.inFlight++
      void this.run(batch).finally(() => {
        this.inFlight--
        this.pump()
      })
    }
  }

  private async run (batch: Waiting[]): Promise<void> {
    if (batch.length > 1) {
      const rows = await this.together(batch).catch(() => undefined)
      if (rows !== undefined) {
        batch.forEach((w, i) => w.resolve(rows[i]))
        return
      }
    }
    await Promise.all(batch.map(async (w) => { await this.single(w.call, w.deadlineAt).then(w.resolve, w.reject) }))
  }

  private async together (batch: Waiting[]): Promise<DecisionRow[]> {
    // A pool too busy to hand out a connection before the first deadline: each decision takes its own path then.
    const client = await withDeadline(this.pool.connect(), Math.min(...batch.map((w) => w.deadlineAt)), (late) => late.release())
    try {
      const { rows } = await client.query<DecisionRow & { i: string }>({
        name: 'jit-decide-batch',
        text: BATCH_SQL,
        values: [batch.map((w) => ({ ...w.call, lock_timeout_ms: this.opts.lockTimeoutMs }))]
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

/**
 * The gateway's batcher (the JIT route's, and the bench's ledger-only route's): up to JIT_BATCH_MAX decisions per
 * call, JIT_BATCH_CONCURRENCY calls at once, and a decision alone through callJitDecide.
 */
export function gatewayBatcher (pool: pg.Pool, config: { JIT_BATCH_MAX: number, JIT_BATCH_CONCURRENCY: number }): JitBatcher {
  return new JitBatcher(pool, (call, deadlineAt) => callJitDecide(pool, call, deadlineAt), {
    maxBatch: config.JIT_BATCH_MAX,
    maxInFlight: config.JIT_BATCH_CONCURRENCY,
    lockTimeoutMs: BATCH_LOCK_TIMEOUT_MS
  })
}
