import type { Queryable } from './db.js'

export type AuditCheck = 'conservation' | 'account' | 'hold' | 'duplicate'

export interface Violation {
  check: AuditCheck
  message: string
  account_id?: string
  /** The JIT token concerned; for a hold, the token that placed it (its id). */
  jit_token?: string
  transfer_id?: string
}

export interface AuditOptions {
  /**
   * Only the accounts, holds, decisions and transfers of these users (tests on a shared database). The program-wide
   * conservation sums and the program accounts are then skipped: they belong to everyone.
   */
  userTokens?: string[]
}

export interface AuditReport {
  violations: Violation[]
  checked: { accounts: number, holds: number, transfers: number }
}

const COLUMNS = ['debits_posted', 'credits_posted', 'debits_pending', 'credits_pending'] as const

/**
 * Checks the ledger invariants of DESIGN §3 on a live database and lists every offence:
 * 1. conservation: all accounts sum to zero, posted and pending; every account's four columns equal what its journal
 *    implies: the holds its decisions placed (a JIT hold is its decision row) plus its transfers (pending adds to the
 *    pending side, post and void take `released` off it, post and single move `amount` on the posted side);
 * 2. holds: `amount` is what its decision or pending transfer placed plus its incrementals, `remaining` that less what
 *    its transfers released, `posted` what its post transfer posted; PENDING iff something remains, and a resolved
 *    hold's status is the one its resolving transfer names; every incremental and hold transfer names an existing hold;
 * 3. exactly-once: transfer ids are a primary key, so what is left to check is a JIT hold placed both as a decision
 *    and as a pending transfer `<token>:hold`, and a hold resolved (posted, voided, expired) more than once.
 * Each check is one statement, so each sees one consistent snapshot; run the whole audit in a REPEATABLE READ
 * transaction (auditSnapshot) to get one snapshot for all of them.
 */
export async function auditLedger (db: Queryable, options: AuditOptions = {}): Promise<AuditReport> {
  const scoped = options.userTokens !== undefined
  const values = scoped ? [options.userTokens] : []
  const violations: Violation[] = []

  // Program accounts belong to every user: a scoped audit leaves them (and their side of each movement) out.
  const accountScope = scoped ? 'a.user_token = ANY($1)' : 'true'
  const inScope = (column: string): string => (scoped ? `${column} IN (SELECT id FROM accounts WHERE user_token = ANY($1))` : 'true')
  const holdScope = scoped ? 's.user_token = ANY($1)' : 'true'
  // A decision's hold is on the account of its jit_funding.user_token: scoped, decisions are found through that index.
  const userDecisions = scoped ? 'd.user_token = ANY($1)' : 'true'

  const counts = await db.query<{ accounts: string, holds: string, transfers: string }>(
    `SELECT (SELECT count(*) FROM accounts a WHERE ${accountScope})::text AS accounts,
            (SELECT count(*) FROM hold_states s WHERE ${holdScope})::text AS holds,
            (SELECT count(*) FROM transfers t
              WHERE ${scoped ? `${inScope('t.debit_account_id')} OR ${inScope('t.credit_account_id')}` : 'true'})::text AS transfers`,
    values)

  if (!scoped) {
    const { rows: [sums] } = await db.query<{ net_posted: string, credits_pending: string, debits_pending: string }>(
      `SELECT coalesce(sum(credits_posted - debits_posted), 0)::text AS net_posted,
              coalesce(sum(credits_pending), 0)::text AS credits_pending,
              coalesce(sum(debits_pending), 0)::text AS debits_pending
         FROM accounts`)
    if (sums.net_posted !== '0') {
      violations.push({ check: 'conservation', message: `posted balances of all accounts sum to ${sums.net_posted}, not 0` })
    }
    if (sums.credits_pending !== sums.debits_pending) {
      violations.push({ check: 'conservation', message: `pending credits (${sums.credits_pending}) differ from pending debits (${sums.debits_pending})` })
    }
  }

  // What the journal says each account's columns are: decision holds, then transfers, each seen from both sides.
  const accounts = await db.query(
    `WITH sides AS (
       SELECT d.account_id, 0::numeric AS debits_posted, 0::numeric AS credits_posted,
              sum(d.hold_minor) AS debits_pending, 0::numeric AS credits_pending
         FROM decisions d WHERE d.hold_minor IS NOT NULL AND ${userDecisions} AND ${inScope('d.account_id')} GROUP BY d.account_id
       UNION ALL
       SELECT d.program_account_id, 0, 0, 0, sum(d.hold_minor)
         FROM decisions d WHERE d.hold_minor IS NOT NULL AND ${scoped ? 'false' : 'true'} GROUP BY d.program_account_id
       UNION ALL
       SELECT t.debit_account_id, sum(t.amount) FILTER (WHERE t.kind IN ('post', 'single')), 0,
              sum(CASE WHEN t.kind = 'pending' THEN t.amount ELSE 0 END - t.released), 0
         FROM transfers t WHERE t.debit_account_id IS NOT NULL AND ${inScope('t.debit_account_id')} GROUP BY t.debit_account_id
       UNION ALL
       SELECT t.credit_account_id, 0, sum(t.amount) FILTER (WHERE t.kind IN ('post', 'single')), 0,
              sum(CASE WHEN t.kind = 'pending' THEN t.amount ELSE 0 END - t.released)
         FROM transfers t WHERE t.credit_account_id IS NOT NULL AND ${inScope('t.credit_account_id')} GROUP BY t.credit_account_id
     ), journal AS (
       SELECT account_id, coalesce(sum(debits_posted), 0) AS debits_posted, coalesce(sum(credits_posted), 0) AS credits_posted,
              coalesce(sum(debits_pending), 0) AS debits_pending, coalesce(sum(credits_pending), 0) AS credits_pending
         FROM sides GROUP BY account_id
     )
     SELECT a.id::text AS account_id, a.user_token, a.currency_code,
            a.debits_posted::text, coalesce(j.debits_posted, 0)::text AS journal_debits_posted,
            a.credits_posted::text, coalesce(j.credits_posted, 0)::text AS journal_credits_posted,
            a.debits_pending::text, coalesce(j.debits_pending, 0)::text AS journal_debits_pending,
            a.credits_pending::text, coalesce(j.credits_pending, 0)::text AS journal_credits_pending
       FROM accounts a LEFT JOIN journal j ON j.account_id = a.id
      WHERE ${accountScope}
        AND (a.debits_posted <> coalesce(j.debits_posted, 0) OR a.credits_posted <> coalesce(j.credits_posted, 0)
          OR a.debits_pending <> coalesce(j.debits_pending, 0) OR a.credits_pending <> coalesce(j.credits_pending, 0))
      ORDER BY a.id`, values)
  for (const r of accounts.rows) {
    const owner = r.user_token === null ? `program account ${r.account_id}` : `account ${r.account_id} of user ${r.user_token}`
    const diffs = COLUMNS.filter((c) => r[c] !== r[`journal_${c}`]).map((c) => `${c} ${r[c]} but journal says ${r[`journal_${c}`]}`)
    violations.push({ check: 'account', account_id: r.account_id, message: `${owner} (${r.currency_code}): ${diffs.join('; ')}` })
  }

  // Each hold against the decisions and transfers that placed, increased, posted and released it. A hold's resolving
  // transfer is the one whose code is hold.posted, hold.voided or hold.expired (hold_release.sql, ledger_apply.sql).
  const holds = await db.query(
    `WITH h AS (SELECT s.* FROM hold_states s WHERE ${holdScope}),
     placed AS (
       SELECT coalesce(d.hold_of, d.jit_token) AS root, sum(d.hold_minor) AS held
         FROM decisions d WHERE d.hold_minor IS NOT NULL AND ${userDecisions} AND coalesce(d.hold_of, d.jit_token) IN (SELECT jit_token FROM h)
        GROUP BY 1
     ), moved AS (
       SELECT t.hold_jit_token AS root, sum(t.amount) FILTER (WHERE t.kind = 'pending') AS held, sum(t.released) AS released,
              sum(t.amount) FILTER (WHERE t.kind = 'post') AS posted,
              array_agg(t.code ORDER BY t.id) FILTER (WHERE t.code IN ('hold.posted', 'hold.voided', 'hold.expired')) AS resolved_by
         FROM transfers t WHERE t.hold_jit_token IN (SELECT jit_token FROM h) GROUP BY 1
     )
     SELECT h.jit_token, h.status, h.amount::text, h.remaining::text, h.posted::text,
            (coalesce(p.held, 0) + coalesce(m.held, 0))::text AS journal_amount,
            (coalesce(p.held, 0) + coalesce(m.held, 0) - coalesce(m.released, 0))::text AS journal_remaining,
            coalesce(m.posted, 0)::text AS journal_posted, coalesce(m.resolved_by, '{}') AS resolved_by
       FROM h LEFT JOIN placed p ON p.root = h.jit_token LEFT JOIN moved m ON m.root = h.jit_token
      ORDER BY h.jit_token`, values)
  for (const r of holds.rows) {
    const problems: string[] = []
    if (r.amount !== r.journal_amount) problems.push(`amount ${r.amount} but journal held ${r.journal_amount}`)
    if (r.remaining !== r.journal_remaining) problems.push(`remaining ${r.remaining} but journal says ${r.journal_remaining}`)
    if (r.posted !== r.journal_posted) problems.push(`posted ${r.posted} but journal says ${r.journal_posted}`)
    if (r.status === 'PENDING' && r.remaining === '0') problems.push('PENDING with nothing remaining')
    if (r.status !== 'PENDING' && r.remaining !== '0') problems.push(`${r.status} with ${r.remaining as string} still remaining`)
    const resolvedBy: string[] = r.resolved_by
    const expected = r.status === 'PENDING' ? undefined : `hold.${(r.status as string).toLowerCase()}`
    if (resolvedBy.length > 1) {
      violations.push({ check: 'duplicate', jit_token: r.jit_token, message: `hold ${r.jit_token} resolved ${resolvedBy.length} times (${resolvedBy.join(', ')})` })
    } else if (expected === undefined && resolvedBy.length === 1) {
      problems.push(`PENDING but resolved by a ${resolvedBy[0]} transfer`)
    } else if (expected !== undefined && resolvedBy[0] !== expected) {
      problems.push(`${r.status as string} but ${resolvedBy.length === 0 ? 'no transfer resolved it' : `resolved by a ${resolvedBy[0]} transfer`}`)
    }
    if (problems.length > 0) {
      violations.push({ check: 'hold', jit_token: r.jit_token, message: `hold ${r.jit_token} (${r.status as string}): ${problems.join('; ')}` })
    }
  }

  // Incrementals and hold transfers that name no hold: their money is on the accounts but in no hold.
  const orphans = await db.query(
    `SELECT 'decision' AS source, d.jit_token AS id, d.hold_of AS hold
       FROM decisions d WHERE d.hold_of IS NOT NULL AND ${userDecisions}
        AND NOT EXISTS (SELECT 1 FROM hold_states s WHERE s.jit_token = d.hold_of)
     UNION ALL
     SELECT 'transfer', t.id, t.hold_jit_token
       FROM transfers t WHERE t.hold_jit_token IS NOT NULL AND (t.amount > 0 OR t.released > 0)
        AND ${inScope('t.debit_account_id')}
        AND NOT EXISTS (SELECT 1 FROM hold_states s WHERE s.jit_token = t.hold_jit_token)
      ORDER BY 1, 2`, values)
  for (const r of orphans.rows) {
    violations.push({
      check: 'hold',
      ...(r.source === 'decision' ? { jit_token: r.id } : { transfer_id: r.id }),
      message: `${r.source as string} ${r.id as string} names hold ${r.hold as string}, which does not exist`
    })
  }

  // A JIT hold is its decision row, or, when a webhook placed it first, the pending transfer `<token>:hold`: never both.
  const twice = await db.query(
    `SELECT d.jit_token, t.id AS transfer_id, d.account_id::text
       FROM decisions d JOIN transfers t ON t.id = d.jit_token || ':hold' AND t.kind = 'pending'
      WHERE d.hold_minor IS NOT NULL AND ${userDecisions}
      ORDER BY 1`, values)
  for (const r of twice.rows) {
    violations.push({
      check: 'duplicate',
      jit_token: r.jit_token,
      transfer_id: r.transfer_id,
      account_id: r.account_id,
      message: `jit token ${r.jit_token as string} placed its hold twice: as its decision and as transfer ${r.transfer_id as string}`
    })
  }

  const c = counts.rows[0]
  return { violations, checked: { accounts: Number(c.accounts), holds: Number(c.holds), transfers: Number(c.transfers) } }
}

/** The audit in one snapshot: a read-only REPEATABLE READ transaction on a dedicated client. */
export async function auditSnapshot (client: Queryable, options: AuditOptions = {}): Promise<AuditReport> {
  await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY')
  try {
    return await auditLedger(client, options)
  } finally {
    await client.query('ROLLBACK')
  }
}
