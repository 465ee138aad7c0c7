import type pg from 'pg'

// Any constant works, as long as every instance uses the same one (see MIGRATION_LOCK in src/migrate.ts).
export const HOLD_EXPIRY_LOCK = 727_274_002

export interface ExpiryPass {
  /** False when another instance holds the lock: this one did nothing. */
  ran: boolean
  expired: number
  releasedMinor: bigint
}

/**
 * How far back the decision side of a sweep looks, per pool: decisions are immutable, so the partial index
 * decisions_hold_expiry keeps every hold ever placed by a decision, resolved or not, and a scan from its start would
 * grow with the history. After a complete pass every decision hold that expired before it has a holds row; a hold
 * decided later expires at least HOLD_EXPIRATION_DAYS (>= 1 day) after its transaction started, so looking back an
 * hour before the last complete pass misses nothing. The first pass of a process scans everything.
 */
const decisionsSweptUntil = new WeakMap<pg.Pool, Date>()
const LOOK_BACK_MS = 3_600_000

/*
 * Pending holds past expiry, oldest first: holds that changed since they were placed (holds_pending_expiry) and holds
 * that are still only their decision row (decisions_hold_expiry). $2 bounds the decision side from below.
 */
const CANDIDATES = `
  SELECT x.jit_token FROM (
    (SELECT h.jit_token, h.expires_at FROM holds h
      WHERE h.status = 'PENDING' AND h.expires_at <= now() ORDER BY h.expires_at LIMIT $1)
    UNION ALL
    (SELECT d.jit_token, d.expires_at FROM decisions d
      WHERE d.hold_minor IS NOT NULL AND d.hold_of IS NULL AND d.expires_at <= now() AND d.expires_at >= $2
        AND NOT EXISTS (SELECT 1 FROM holds h WHERE h.jit_token = d.jit_token)
      ORDER BY d.expires_at LIMIT $1)
  ) x ORDER BY x.expires_at LIMIT $1`

/**
 * Expires the pending holds past their `expires_at` (set from HOLD_EXPIRATION_DAYS when the hold was placed), in
 * batches of `limit`, under a session advisory lock so that one instance at a time does it. Each hold_expire() is its
 * own statement and transaction: it locks one account briefly instead of many for the whole sweep.
 */
export async function expireHolds (pool: pg.Pool, limit = 500): Promise<ExpiryPass> {
  const client = await pool.connect()
  const pass: ExpiryPass = { ran: false, expired: 0, releasedMinor: 0n }
  let locked = false
  try {
    locked = (await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1) AS locked', [HOLD_EXPIRY_LOCK])).rows[0].locked
    if (!locked) return pass
    pass.ran = true
    const since = decisionsSweptUntil.get(pool) ?? new Date(0)
    const started = (await client.query<{ now: Date }>('SELECT now()')).rows[0].now
    // Bounded, so that a hold that keeps failing to expire cannot spin the loop.
    for (let batch = 0; batch < 20; batch++) {
      const { rows } = await client.query<{ jit_token: string }>(CANDIDATES, [limit, since])
      for (const { jit_token: root } of rows) {
        const released = (await client.query<{ released: string | null }>('SELECT hold_expire($1)::text AS released', [root])).rows[0].released
        if (BigInt(released ?? 0) > 0n) {
          pass.expired++
          pass.releasedMinor += BigInt(released ?? 0)
        }
      }
      if (rows.length < limit) {
        decisionsSweptUntil.set(pool, new Date(started.getTime() - LOOK_BACK_MS))
        break
      }
    }
    return pass
  } finally {
    if (locked) await client.query('SELECT pg_advisory_unlock($1)', [HOLD_EXPIRY_LOCK]).catch(() => {})
    client.release()
  }
}
