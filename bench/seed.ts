import type pg from 'pg'

/**
 * Bench data created straight in SQL, in bulk, with tokens unique to the run (so re-runs never collide and earlier
 * runs' rows can stay). Funds go through ledger_apply (a forced credit per user), so the transfers and the account
 * columns agree and the ledger audit stays clean.
 */

export interface Population {
  /** User i is `${userPrefix}${i}`, its card j `${cardPrefix}${i}-${j}`. */
  userPrefix: string
  cardPrefix: string
  /** Every (user, card) pair of the many-users population. */
  pairs: Array<[string, string]>
  users: string[]
  corporateUser: string
  /** All cards of the corporate user, on its one account. */
  corporatePairs: Array<[string, string]>
}

export interface SeedOptions { runId: string, users: number, cardsPerUser: number, corporateCards: number, userFundMinor: bigint, corporateFundMinor: bigint }

export async function seedPopulation (pool: pg.Pool, o: SeedOptions): Promise<Population> {
  const userPrefix = `bu${o.runId}-`
  const cardPrefix = `bc${o.runId}-`
  const corporateUser = `bcorp${o.runId}`
  const corporateCardPrefix = `bk${o.runId}-`
  const client = await pool.connect()
  try {
    await client.query('SET statement_timeout = 0')
    await client.query('BEGIN')
    await client.query(`INSERT INTO users (token, first_name, last_name, metadata)
      SELECT $1 || i, 'Bench', 'User ' || i, '{"bench": true}' FROM generate_series(0, $2::int - 1) i`, [userPrefix, o.users])
    await client.query(`INSERT INTO users (token, first_name, last_name, metadata) VALUES ($1, 'Bench', 'Corporate', '{"bench": true}')`, [corporateUser])
    await client.query(`INSERT INTO cards (token, user_token)
      SELECT $1 || i || '-' || j, $2 || i FROM generate_series(0, $3::int - 1) i, generate_series(0, $4::int - 1) j`,
    [cardPrefix, userPrefix, o.users, o.cardsPerUser])
    await client.query(`INSERT INTO cards (token, user_token) SELECT $1 || j, $2 FROM generate_series(0, $3::int - 1) j`,
      [corporateCardPrefix, corporateUser, o.corporateCards])
    const fund = `SELECT count(*) FILTER (WHERE r->>'status' = 'applied')::int AS applied FROM (
      SELECT ledger_apply(jsonb_build_object('kind', 'credit', 'effect_key', 'bench-fund:' || u.token, 'user_token', u.token,
        'currency_code', 'USD', 'amount_minor', $2::bigint, 'forced', true, 'transaction_token', 'bench-fund-' || u.token)) AS r
      FROM (SELECT token FROM users WHERE token LIKE $1 ORDER BY token) u) s`
    const many = await client.query(fund, [`${userPrefix}%`, o.userFundMinor.toString()])
    const corporate = await client.query(fund, [corporateUser, o.corporateFundMinor.toString()])
    if (many.rows[0].applied !== o.users || corporate.rows[0].applied !== 1) throw new Error('bench funding did not apply to every user')
    await client.query('COMMIT')
  } catch (err) {
    await client.query('ROLLBACK').catch(() => {})
    throw err
  } finally {
    client.release()
  }
  const users: string[] = []
  const pairs: Array<[string, string]> = []
  for (let i = 0; i < o.users; i++) {
    users.push(`${userPrefix}${i}`)
    for (let j = 0; j < o.cardsPerUser; j++) pairs.push([`${userPrefix}${i}`, `${cardPrefix}${i}-${j}`])
  }
  const corporatePairs: Array<[string, string]> = []
  for (let j = 0; j < o.corporateCards; j++) corporatePairs.push([corporateUser, `${corporateCardPrefix}${j}`])
  return { userPrefix, cardPrefix, pairs, users, corporateUser, corporatePairs }
}
