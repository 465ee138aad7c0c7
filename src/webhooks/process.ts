import type { Queryable } from '../db.js'
import { InvalidWebhookItemError, planTransaction, type LedgerEffect } from './transaction.js'

export interface LedgerResult {
  status: 'applied' | 'duplicate' | 'declined' | 'no_account'
  approved_minor: number | string
  overdrawn?: boolean
  reason?: string
}

export interface ProcessDeps {
  db: Queryable
  holdExpirationDays: number
  /** Drops cached authorization contexts after a state change (plugins/cache.ts). */
  invalidate?: (what: { cards?: string[], users?: string[] }) => Promise<void>
  onOverdrawn?: () => void
  log?: { warn: (obj: object, msg?: string) => void }
}

export type ProcessOutcome =
  | { type: 'transactions', action: 'ledger', effectKey: string, result: LedgerResult }
  | { type: 'cards' | 'usertransitions', action: 'state', token: string, changed: boolean }
  | { type: string, action: 'none', reason: string }

/**
 * The effect of one queued webhook item (`webhooks.process`). Safe to run any number of times and in any order:
 * ledger effects are keyed (a transfer's id is its exactly-once key), state updates are absolute. Throws on anything that may succeed later
 * (database down, a user not created yet) or never (invalid item): the broker retries, then dead-letters.
 */
export async function processWebhookItem (deps: ProcessDeps, routingKey: string, content: Buffer): Promise<ProcessOutcome> {
  const type = routingKey.startsWith('webhook.') ? routingKey.slice('webhook.'.length) : routingKey
  let item: unknown
  try {
    item = JSON.parse(content.toString('utf8'))
  } catch {
    throw new InvalidWebhookItemError(`${type} item is not valid JSON`)
  }
  switch (type) {
    case 'transactions': return await applyTransaction(deps, item)
    case 'cards': return await applyCardTransition(deps, item)
    case 'usertransitions': return await applyUserTransition(deps, item)
    default: return { type, action: 'none', reason: type === 'pings' ? 'ping' : 'unknown webhook type (archived only)' }
  }
}

async function applyTransaction (deps: ProcessDeps, item: unknown): Promise<ProcessOutcome> {
  const plan = planTransaction(item, deps.holdExpirationDays)
  if (plan.action === 'none') return { type: 'transactions', action: 'none', reason: plan.reason }
  const result = await applyLedgerEffect(deps.db, plan.effect, plan.supersedes)
  if (result.status === 'no_account') {
    throw new Error(`no account for user ${plan.effect.user_token} (${plan.effect.effect_key})`)
  }
  if (result.status === 'declined') {
    // Forced effects skip every check; a decline here means the ledger function changed under us.
    throw new Error(`ledger refused a forced ${plan.effect.kind} (${plan.effect.effect_key}): ${result.reason ?? 'declined'}`)
  }
  if (result.status === 'applied' && result.overdrawn === true) deps.onOverdrawn?.()
  return { type: 'transactions', action: 'ledger', effectKey: plan.effect.effect_key, result }
}

/**
 * One statement, so one round trip and one transaction: the effect, then the keys it supersedes claimed by empty
 * transfers (ON CONFLICT: an effect that did happen keeps its own record). ledger_apply locks the user's account first, so
 * a JIT decision for the same account waits for this commit and then sees the superseding record.
 */
export async function applyLedgerEffect (db: Queryable, effect: LedgerEffect, supersedes: string[] = []): Promise<LedgerResult> {
  const { rows } = await db.query<{ r: LedgerResult }>(
    `WITH applied AS (SELECT ledger_apply($1::jsonb) AS r),
          superseded AS (
            INSERT INTO transfers (id, kind, code, reference)
            SELECT k, 'void', 'superseded', $3::text
              FROM applied, unnest($2::text[]) k
             WHERE applied.r->>'status' = 'applied'
               -- A hold a JIT decision placed is that decision's row, not a transfer: it did happen.
               AND NOT EXISTS (SELECT 1 FROM decisions d WHERE k LIKE '%:hold' AND d.jit_token = left(k, -5) AND d.hold_minor IS NOT NULL)
            ON CONFLICT (id) DO NOTHING)
     SELECT r FROM applied`, [JSON.stringify(effect), supersedes, effect.effect_key])
  return rows[0].r
}

// Marqeta's card states that we keep (cards.state); TERMINATED is final.
const cardStates = new Set(['ACTIVE', 'SUSPENDED', 'TERMINATED', 'UNACTIVATED'])
// Marqeta's user statuses mapped onto ours (users.status); CLOSED is final and TERMINATED closes.
const userStatuses: Record<string, string> = { ACTIVE: 'ACTIVE', SUSPENDED: 'SUSPENDED', CLOSED: 'CLOSED', TERMINATED: 'CLOSED' }

const str = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined

/** When Marqeta made the transition (its `created_time`), so that one delivered late does not undo a newer one. */
function transitionTime (transition: Record<string, unknown>): Date {
  const at = new Date(str(transition.created_time) ?? NaN)
  return Number.isNaN(at.getTime()) ? new Date() : at
}

/** Where a transition lands: the table, its state column (with `<column>_since`), and the state that is final. */
interface StateTarget { type: 'cards' | 'usertransitions', table: 'cards' | 'users', column: 'state' | 'status', final: string }
const cardTarget: StateTarget = { type: 'cards', table: 'cards', column: 'state', final: 'TERMINATED' }
const userTarget: StateTarget = { type: 'usertransitions', table: 'users', column: 'status', final: 'CLOSED' }

async function applyCardTransition (deps: ProcessDeps, item: unknown): Promise<ProcessOutcome> {
  const transition = (item ?? {}) as Record<string, unknown>
  const cardToken = str(transition.card_token)
  const state = str(transition.state)
  if (cardToken === undefined || state === undefined) throw new InvalidWebhookItemError('card transition without card_token or state')
  if (!cardStates.has(state)) return { type: 'cards', action: 'none', reason: `card state ${state} not tracked` }
  const outcome = await applyState(deps, cardTarget, cardToken, state, transitionTime(transition))
  if (outcome.action === 'state' && outcome.changed) await invalidate(deps, { cards: [cardToken] })
  return outcome
}

async function applyUserTransition (deps: ProcessDeps, item: unknown): Promise<ProcessOutcome> {
  const transition = (item ?? {}) as Record<string, unknown>
  const userToken = str(transition.user_token)
  const status = str(transition.status)
  if (userToken === undefined || status === undefined) throw new InvalidWebhookItemError('user transition without user_token or status')
  const mapped = userStatuses[status]
  if (mapped === undefined) return { type: 'usertransitions', action: 'none', reason: `user status ${status} not tracked` }
  const outcome = await applyState(deps, userTarget, userToken, mapped, transitionTime(transition))
  if (outcome.action === 'state' && outcome.changed) await invalidate(deps, { users: [userToken] })
  return outcome
}

/** Sets the state unless it is final or a newer transition (or admin change) already set it. */
async function applyState (deps: ProcessDeps, target: StateTarget, token: string, value: string, at: Date): Promise<ProcessOutcome> {
  const { table, column, final, type } = target
  const { rows } = await deps.db.query<{ previous: string }>(
    `WITH prev AS (SELECT ${column} FROM ${table} WHERE token = $1 FOR UPDATE)
     UPDATE ${table} t SET ${column} = $2, ${column}_since = $3, last_modified_time = now() FROM prev
      WHERE t.token = $1 AND prev.${column} <> '${final}' AND (t.${column}_since IS NULL OR t.${column}_since <= $3)
     RETURNING prev.${column} AS previous`, [token, value, at])
  if (rows.length === 0) return { type, action: 'none', reason: `${table.slice(0, -1)} unknown, ${final.toLowerCase()}, or a newer ${column} already applied` }
  return { type, action: 'state', token, changed: rows[0].previous !== value }
}

async function invalidate (deps: ProcessDeps, what: { cards?: string[], users?: string[] }): Promise<void> {
  try {
    await deps.invalidate?.(what)
  } catch (err) {
    // PostgreSQL re-checks states on every money movement, so a stale cache costs at most a wrong decline until its TTL.
    deps.log?.warn({ err: (err as Error).message, ...what }, 'cache invalidation after a webhook failed')
  }
}
