import type { Queryable } from './db.js'

export type AuditCheck = 'conservation' | 'account' | 'hold' | 'duplicate'

export interface Violation {
  check: AuditCheck
  message: string
  account_id?: string
  hold_id?: string
  jit_token?: string
  effect_key?: string
}

export interface AuditOptions {
  /**
   * Only the accounts, holds and entries of these users (tests on a shared database). The program-wide
   * conservation sums are then skipped: they belong to everyone.
   */
  userTokens?: string[]
}

export interface AuditReport {
  violations: Violation[]
  checked: { accounts: number, holds: number, entries: number }
}

/**
 * Checks the ledger invariants of DESIGN §3 on a live database and lists every offence:
 * 1. conservation: all accounts sum to zero (posted) and pending debits equal pending credits; every account's four
 *    columns equal the sums of its journal (posted → *_posted; pending minus release → *_pending);
 * 2. holds: `amount` is what was held, `remaining` what is still held according to the journal; PENDING holds keep
 *    something, resolved ones nothing;
 * 3. exactly-once: no effect key or JIT token moves the same money twice; no JIT token belongs to two holds.
 * Each check is one statement, so each sees one consistent snapshot; run the whole audit in a REPEATABLE READ
 * transaction to get one snapshot for all of them.
 */
export async function auditLedger (db: Queryable, options: AuditOptions = {}): Promise<AuditReport> {
  const scoped = options.userTokens !== undefined
  const users = options.userTokens ?? []
  const violations: Violation[] = []

  // Accounts in scope, and the entries that touch them.
  const accountScope = scoped ? 'a.user_token = ANY($1)' : 'true'
  const entryScope = scoped
    ? '(e.debit_account_id IN (SELECT id FROM accounts WHERE user_token = ANY($1)) OR e.credit_account_id IN (SELECT id FROM accounts WHERE user_token = ANY($1)))'
    : 'true'
  const holdScope = scoped ? 'h.user_token = ANY($1)' : 'true'
  const values = scoped ? [users] : []

  const counts = await db.query<{ accounts: string, holds: string, entries: string }>(
    `SELECT (SELECT count(*) FROM accounts a WHERE ${accountScope})::text AS accounts,
            (SELECT count(*) FROM holds h WHERE ${holdScope})::text AS holds,
            (SELECT count(*) FROM entries e WHERE ${entryScope})::text AS entries`, values)

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

  const accounts = await db.query(
    `WITH sides AS (
       SELECT e.debit_account_id AS account_id,
              sum(e.amount) FILTER (WHERE e.phase = 'posted') AS debits_posted, NULL::numeric AS credits_posted,
              sum(CASE e.phase WHEN 'pending' THEN e.amount WHEN 'release' THEN -e.amount ELSE 0 END) AS debits_pending,
              NULL::numeric AS credits_pending
         FROM entries e WHERE ${entryScope} GROUP BY e.debit_account_id
       UNION ALL
       SELECT e.credit_account_id, NULL, sum(e.amount) FILTER (WHERE e.phase = 'posted'), NULL,
              sum(CASE e.phase WHEN 'pending' THEN e.amount WHEN 'release' THEN -e.amount ELSE 0 END)
         FROM entries e WHERE ${entryScope} GROUP BY e.credit_account_id
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
    const diffs = ['debits_posted', 'credits_posted', 'debits_pending', 'credits_pending']
      .filter((c) => r[c] !== r[`journal_${c}`])
      .map((c) => `${c} ${r[c]} but journal says ${r[`journal_${c}`]}`)
    violations.push({ check: 'account', account_id: r.account_id, message: `${owner} (${r.currency_code}): ${diffs.join('; ')}` })
  }

  const holds = await db.query(
    `SELECT h.id::text AS hold_id, h.jit_token, h.status, h.amount::text, h.remaining::text,
            coalesce(j.held, 0)::text AS journal_held, coalesce(j.outstanding, 0)::text AS journal_remaining
       FROM holds h
       LEFT JOIN (SELECT e.hold_id, sum(e.amount) FILTER (WHERE e.phase = 'pending') AS held,
                         sum(CASE e.phase WHEN 'pending' THEN e.amount WHEN 'release' THEN -e.amount ELSE 0 END) AS outstanding
                    FROM entries e WHERE e.hold_id IS NOT NULL GROUP BY e.hold_id) j ON j.hold_id = h.id
      WHERE ${holdScope}
        AND (h.remaining <> coalesce(j.outstanding, 0) OR h.amount <> coalesce(j.held, 0) OR h.remaining > h.amount
          OR (h.status = 'PENDING' AND h.remaining = 0) OR (h.status <> 'PENDING' AND h.remaining > 0))
      ORDER BY h.id`, values)
  for (const r of holds.rows) {
    const problems: string[] = []
    if (r.remaining !== r.journal_remaining) problems.push(`remaining ${r.remaining} but journal says ${r.journal_remaining}`)
    if (r.amount !== r.journal_held) problems.push(`amount ${r.amount} but journal held ${r.journal_held}`)
    if (BigInt(r.remaining) > BigInt(r.amount)) problems.push(`remaining ${r.remaining} exceeds amount ${r.amount}`)
    if (r.status === 'PENDING' && r.remaining === '0') problems.push('PENDING with nothing remaining')
    if (r.status !== 'PENDING' && r.remaining !== '0') problems.push(`${r.status} with ${r.remaining} still remaining`)
    violations.push({ check: 'hold', hold_id: r.hold_id, jit_token: r.jit_token, message: `hold ${r.hold_id} (jit ${r.jit_token}, ${r.status}): ${problems.join('; ')}` })
  }

  // The same movement twice under one effect key or one JIT token (a multi-hold clearing releases each hold once).
  const repeated = await db.query(
    `SELECT 'effect key' AS by, e.effect_key AS key, e.kind, e.phase, e.debit_account_id::text, e.credit_account_id::text,
            e.hold_id::text, count(*)::int AS n
       FROM entries e WHERE e.effect_key IS NOT NULL AND ${entryScope}
      GROUP BY e.effect_key, e.kind, e.phase, e.debit_account_id, e.credit_account_id, e.hold_id HAVING count(*) > 1
     UNION ALL
     SELECT 'jit token', e.jit_token, e.kind, e.phase, e.debit_account_id::text, e.credit_account_id::text, e.hold_id::text, count(*)::int
       FROM entries e WHERE e.jit_token IS NOT NULL AND ${entryScope}
      GROUP BY e.jit_token, e.kind, e.phase, e.debit_account_id, e.credit_account_id, e.hold_id HAVING count(*) > 1
      ORDER BY 1, 2`, values)
  for (const r of repeated.rows) {
    violations.push({
      check: 'duplicate',
      account_id: r.debit_account_id,
      ...(r.by === 'effect key' ? { effect_key: r.key } : { jit_token: r.key }),
      message: `${r.by} ${r.key} has ${r.n} ${r.kind}/${r.phase} entries from account ${r.debit_account_id} to ${r.credit_account_id}${r.hold_id === null ? '' : ` on hold ${r.hold_id}`}`
    })
  }

  // One effect key is one operation: its entries share one kind (a clearing adds the release of its holds).
  const mixed = await db.query(
    `SELECT e.effect_key, array_agg(DISTINCT e.kind ORDER BY e.kind) AS kinds
       FROM entries e WHERE e.effect_key IS NOT NULL AND e.kind <> 'settle.release' AND ${entryScope}
      GROUP BY e.effect_key HAVING count(DISTINCT e.kind) > 1 ORDER BY 1`, values)
  for (const r of mixed.rows) {
    violations.push({ check: 'duplicate', effect_key: r.effect_key, message: `effect key ${r.effect_key} moved money as ${r.kinds.join(' and ')}` })
  }

  const shared = await db.query(
    `SELECT x.jit_token, array_agg(DISTINCT x.hold_id::text) AS holds
       FROM (SELECT t.jit_token, t.hold_id FROM hold_tokens t UNION ALL SELECT h.jit_token, h.id FROM holds h) x
      WHERE ${scoped ? 'x.hold_id IN (SELECT h.id FROM holds h WHERE h.user_token = ANY($1))' : 'true'}
      GROUP BY x.jit_token HAVING count(DISTINCT x.hold_id) > 1 ORDER BY 1`, values)
  for (const r of shared.rows) {
    violations.push({ check: 'duplicate', jit_token: r.jit_token, message: `jit token ${r.jit_token} belongs to holds ${r.holds.join(', ')}` })
  }

  const c = counts.rows[0]
  return { violations, checked: { accounts: Number(c.accounts), holds: Number(c.holds), entries: Number(c.entries) } }
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
