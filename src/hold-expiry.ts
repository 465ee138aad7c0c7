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
    // Bounded, so that a hold that keeps failing to expire cannot spin the loop.
    for (let batch = 0; batch < 20; batch++) {
      const { rows } = await client.query<{ id: string }>(
        `SELECT id FROM holds WHERE status = 'PENDING' AND expires_at <= now() ORDER BY expires_at LIMIT $1`, [limit])
      for (const { id } of rows) {
        const released = (await client.query<{ released: string }>('SELECT hold_expire($1) AS released', [id])).rows[0].released
        if (BigInt(released ?? 0) > 0n) {
          pass.expired++
          pass.releasedMinor += BigInt(released)
        }
      }
      if (rows.length < limit) break
    }
    return pass
  } finally {
    if (locked) await client.query('SELECT pg_advisory_unlock($1)', [HOLD_EXPIRY_LOCK]).catch(() => {})
    client.release()
  }
}
