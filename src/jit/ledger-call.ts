import type pg from 'pg'
import { isConnectionError, pgErrors } from '../db.js'

/** One item's answer from jit_decide (schema/functions/jit_decide.sql). */
export interface DecisionRow { status_code: number, response: string, replay: boolean, overdrawn?: boolean }

/** One decision's ledger call: the jit_decide item, answered by its row or undefined past the deadline. */
export type LedgerCall = (call: Record<string, unknown>, deadlineAt: number) => Promise<DecisionRow | undefined>

/** jit_decide's answer to a decision whose context versions are not current: nothing was written. */
export const STALE_CONTEXT = 409

/** PostgreSQL cannot answer at all: the route answers 503 so that Marqeta's stand-in rules apply. */
export class LedgerUnavailableError extends Error {
  override name = 'LedgerUnavailableError'
  statusCode = 503
}

export class DeadlineError extends Error {}

/** Resolves with `promise` unless the deadline (a performance.now() time) passes first; a late value goes to onLate. */
export function withDeadline<T> (promise: Promise<T>, deadlineAt: number, onLate: (value: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let expired = false
    const timer = setTimeout(() => { expired = true; reject(new DeadlineError()) }, Math.max(0, deadlineAt - performance.now()))
    promise.then((value) => {
      clearTimeout(timer)
      if (expired) onLate(value)
      else resolve(value)
    }, (err) => { clearTimeout(timer); reject(err) })
  })
}

/**
 * The pool's own wait (connectionTimeoutMillis) ran out: PostgreSQL is slow or the pool saturated, not unreachable
 * (that fails at once), so the answer is the deadline's decline, not a 503 that hands the decision to stand-in.
 */
export const isPoolTimeout = (err: unknown): boolean =>
  /timeout exceeded when trying to connect|Connection terminated due to connection timeout/i.test((err as Error)?.message ?? '')

/** The item's deadline for the check inside jit_decide: wall-clock milliseconds, as PostgreSQL's clock counts them. */
export const wallClockDeadline = (deadlineAt: number): number => Date.now() + (deadlineAt - performance.now())

/** Margin kept between the in-transaction deadline check and the deadline, for the commit and the answer's way back. */
export const DEADLINE_MARGIN_MS = 20

/**
 * Runs one decision (a batch of one) within the deadline: the wait for a pooled connection is bounded, the remaining
 * time bounds lock waits inside the statement (lock_timeout), and jit_decide declines an approval whose deadline has
 * passed once its locks are held. Returns undefined when the deadline passed first (nothing was changed).
 */
export async function callJitDecide (pool: pg.Pool, call: Record<string, unknown>, deadlineAt: number, shard?: number): Promise<DecisionRow | undefined> {
  let client: pg.PoolClient
  try {
    client = await withDeadline(pool.connect(), deadlineAt, (late) => late.release())
  } catch (err) {
    if (err instanceof DeadlineError || isPoolTimeout(err)) return undefined
    throw new LedgerUnavailableError(`PostgreSQL unavailable: ${(err as Error).message}`)
  }
  try {
    // A token decided concurrently by another transaction (a rare race of two declines) is answered as its replay.
    for (let attempt = 1; ; attempt++) {
      const remaining = Math.floor(deadlineAt - performance.now())
      if (remaining <= 0) return undefined
      try {
        const { rows } = await client.query<DecisionRow>({
          name: 'jit-decide',
          text: 'SELECT status_code, response, replay, overdrawn FROM jit_decide(ARRAY[$1::jsonb], $2, $3, $4)',
          values: [{ ...call, deadline_ms: wallClockDeadline(deadlineAt) }, shard ?? null, remaining, DEADLINE_MARGIN_MS]
        })
        return rows[0]
      } catch (err) {
        if ((err as { code?: string }).code !== pgErrors.uniqueViolation || attempt >= 2) throw err
      }
    }
  } catch (err) {
    const code = (err as { code?: string }).code
    if (code === pgErrors.lockNotAvailable || code === pgErrors.queryCanceled) return undefined
    if (isConnectionError(err)) throw new LedgerUnavailableError(`PostgreSQL unavailable: ${(err as Error).message}`)
    throw err
  } finally {
    client.release()
  }
}
