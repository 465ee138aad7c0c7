import type pg from 'pg'

/**
 * Deletes published outbox rows older than `retentionS` (the relay's at-least-once window is long over; the archive in
 * MongoDB keeps every message). Ids grow with time, so it walks the primary key from the oldest row in ranges of
 * `rangeSize` ids, each one index range delete, and stops at the first range followed by a row still inside the
 * retention. Rows not yet published are never deleted, however old: the relay still owes them to the broker.
 * Several instances may prune at once: they delete the same rows, harmlessly.
 */
export async function pruneOutbox (pool: pg.Pool, retentionS: number, rangeSize = 5000, maxRanges = 40): Promise<number> {
  const first = (await pool.query<{ lo: string | null }>('SELECT min(id) AS lo FROM outbox')).rows[0].lo
  if (first === null) return 0
  let lo = BigInt(first)
  let deleted = 0
  for (let range = 0; range < maxRanges; range++) {
    const { rows } = await pool.query<{ deleted: number, more: boolean | null }>(
      `WITH gone AS (
         DELETE FROM outbox
          WHERE id >= $1::bigint AND id < $1::bigint + $2 AND published_at IS NOT NULL
            AND created_at < now() - make_interval(secs => $3)
         RETURNING 1)
       SELECT (SELECT count(*)::int FROM gone) AS deleted,
              (SELECT created_at < now() - make_interval(secs => $3) FROM outbox
                WHERE id >= $1::bigint + $2 ORDER BY id LIMIT 1) AS more`,
      [lo.toString(), rangeSize, retentionS])
    deleted += rows[0].deleted
    if (rows[0].more !== true) break
    lo += BigInt(rangeSize)
  }
  return deleted
}
