import type { Database, Queryable } from '../db.js'
import { createCard, getCard, setCardState, type CardState } from '../admin/cards.js'
import {
  createAuthControl, createVelocityControl, deactivateAuthControl, deactivateVelocityControl,
  type NewAuthControl, type NewVelocityControl, type VelocityWindow
} from '../admin/controls.js'
import { HttpError } from '../admin/errors.js'
import { amountMinor, exponentOf } from '../admin/money.js'
import { TOKEN_PATTERN } from '../admin/tokens.js'
import { createUser, getUser, setUserStatus, type UserStatus } from '../admin/users.js'
import type { MarqetaClient } from './client.js'
import type { MarqetaAuthControl, MarqetaCard, MarqetaUser, MarqetaVelocityControl } from './types.js'

/** The cache scopes a change touches (the same shape as the app's `invalidateContext`). */
export interface Invalidation { users?: string[], cards?: string[], controls?: string[] }

export type SyncKind = 'users' | 'cards' | 'velocity_controls' | 'auth_controls'
export interface SyncCounts { created: number, updated: number, unchanged: number, skipped: number }
export type SyncSummary = Record<SyncKind, SyncCounts> & { skipped: string[] }

export interface SyncDeps {
  db: Database
  client: MarqetaClient
  /** Reads both sides and counts what would change; writes nothing. */
  dryRun?: boolean
  invalidate?: (what: Invalidation) => Promise<void>
  onProgress?: (kind: SyncKind, processed: number) => void
}

type Outcome = { action: 'created' | 'updated' | 'unchanged' } | { action: 'skipped', reason: string }

// Marqeta's user statuses onto ours (users.status). UNVERIFIED users cannot transact on Marqeta (user.active is
// false), LIMITED ones can within pre-KYC limits. @see https://www.marqeta.com/docs/core-api/user-transitions/create-user-transition
const userStatuses: Record<string, UserStatus> = {
  ACTIVE: 'ACTIVE', LIMITED: 'ACTIVE', SUSPENDED: 'SUSPENDED', UNVERIFIED: 'SUSPENDED', CLOSED: 'CLOSED', TERMINATED: 'CLOSED'
}
const cardStates = new Set<string>(['ACTIVE', 'SUSPENDED', 'TERMINATED', 'UNACTIVATED'])
const velocityWindows = new Set<string>(['DAY', 'WEEK', 'MONTH', 'LIFETIME', 'TRANSACTION'])
const tokenPattern = new RegExp(TOKEN_PATTERN)

/**
 * Imports Marqeta's users, cards (with their states) and velocity/auth controls into our tables through the admin
 * functions (src/admin), so that their rules and cache scopes stay the same as the admin API's. Re-runnable: what is
 * already equal is left alone. Never touches accounts or ledger entries: balances are ours, not Marqeta's.
 */
export async function syncFromMarqeta (deps: SyncDeps): Promise<SyncSummary> {
  const summary: SyncSummary = {
    users: counts(), cards: counts(), velocity_controls: counts(), auth_controls: counts(), skipped: []
  }
  const record = (kind: SyncKind, token: string, outcome: Outcome): void => {
    summary[kind][outcome.action]++
    if (outcome.action === 'skipped' && summary.skipped.length < 100) summary.skipped.push(`${kind} ${token}: ${outcome.reason}`)
    deps.onProgress?.(kind, processed(summary[kind]))
  }

  for await (const user of deps.client.listUsers()) {
    record('users', user.token, await guard(() => syncUser(deps, user)))
    // Even a skipped user's cards: a CLOSED user's card may still change state (a card of an unknown user is skipped).
    for await (const card of deps.client.listCardsForUser(user.token)) {
      record('cards', card.token, await guard(() => syncCard(deps, card)))
    }
  }
  for await (const control of deps.client.listVelocityControls()) {
    record('velocity_controls', control.token, await guard(() => syncVelocityControl(deps, control)))
  }
  for await (const control of deps.client.listAuthControls()) {
    record('auth_controls', control.token, await guard(() => syncAuthControl(deps, control)))
  }
  return summary
}

const counts = (): SyncCounts => ({ created: 0, updated: 0, unchanged: 0, skipped: 0 })
const processed = (c: SyncCounts): number => c.created + c.updated + c.unchanged + c.skipped

/** A refusal of the admin rules (unknown user, final state, bad amount) skips the record and says why. */
async function guard (work: () => Promise<Outcome>): Promise<Outcome> {
  try {
    return await work()
  } catch (err) {
    if (err instanceof HttpError) return { action: 'skipped', reason: err.message }
    // A reference to a user or card we do not have, or a value our schema refuses: this record only.
    const code = (err as { code?: string }).code
    const foreignKeyOrCheckViolation = code === '23503' || code === '23514'
    if (foreignKeyOrCheckViolation) return { action: 'skipped', reason: (err as Error).message }
    throw err
  }
}

async function orUndefined<T> (get: () => Promise<T>): Promise<T | undefined> {
  try {
    return await get()
  } catch (err) {
    if (err instanceof HttpError && err.statusCode === 404) return undefined
    throw err
  }
}

async function syncUser ({ db, dryRun, invalidate }: SyncDeps, m: MarqetaUser): Promise<Outcome> {
  if (!tokenPattern.test(m.token)) return { action: 'skipped', reason: 'token outside [A-Za-z0-9_-]{1,36}' }
  const status = userStatuses[m.status ?? 'ACTIVE']
  if (status === undefined) return { action: 'skipped', reason: `user status ${String(m.status)} not tracked` }
  const current = await orUndefined(() => getUser(db, m.token))
  if (current === undefined) {
    if (dryRun === true) return { action: 'created' }
    await createUser(db, { token: m.token, first_name: m.first_name, last_name: m.last_name, metadata: stringValues(m.metadata) })
    if (status !== 'ACTIVE') await setUserStatus(db, m.token, status)
    await invalidate?.({ users: [m.token] })
    return { action: 'created' }
  }
  if (current.status === status) return { action: 'unchanged' }
  if (current.status === 'CLOSED') return { action: 'skipped', reason: `is CLOSED here (final), ${status} at Marqeta` }
  if (dryRun === true) return { action: 'updated' }
  await setUserStatus(db, m.token, status)
  await invalidate?.({ users: [m.token] })
  return { action: 'updated' }
}

async function syncCard ({ db, dryRun, invalidate }: SyncDeps, m: MarqetaCard): Promise<Outcome> {
  if (!tokenPattern.test(m.token)) return { action: 'skipped', reason: 'token outside [A-Za-z0-9_-]{1,36}' }
  const state = m.state ?? 'ACTIVE'
  if (!cardStates.has(state)) return { action: 'skipped', reason: `card state ${state} not tracked` }
  const current = await orUndefined(() => getCard(db, m.token))
  if (current === undefined) {
    if (dryRun === true) return { action: 'created' }
    await createCard(db, { token: m.token, user_token: m.user_token, state: state as CardState })
    await invalidate?.({ cards: [m.token] })
    return { action: 'created' }
  }
  if (current.user_token !== m.user_token) return { action: 'skipped', reason: `belongs to ${current.user_token} here, ${m.user_token} at Marqeta` }
  if (current.state === state) return { action: 'unchanged' }
  if (current.state === 'TERMINATED') return { action: 'skipped', reason: `is TERMINATED here (final), ${state} at Marqeta` }
  if (dryRun === true) return { action: 'updated' }
  await setCardState(db, m.token, state as CardState)
  await invalidate?.({ cards: [m.token] })
  return { action: 'updated' }
}

/** Marqeta's control association and scope onto ours, or why it cannot be represented. */
function common (m: MarqetaVelocityControl | MarqetaAuthControl): { user_token?: string, mcc?: string, mid?: string } | string {
  if (!tokenPattern.test(m.token)) return 'token outside [A-Za-z0-9_-]{1,36}'
  if (m.association?.card_product_token !== undefined) return `associated with card product ${m.association.card_product_token} (card products are not modelled here)`
  if (m.merchant_scope?.mcc_group !== undefined) return 'merchant_scope.mcc_group is not modelled here'
  return {
    ...(m.association?.user_token !== undefined ? { user_token: m.association.user_token } : {}),
    ...(m.merchant_scope?.mcc !== undefined ? { mcc: m.merchant_scope.mcc } : {}),
    ...(m.merchant_scope?.mid !== undefined ? { mid: m.merchant_scope.mid } : {})
  }
}

interface StoredControl {
  token: string
  name: string | null
  user_token: string | null
  card_token: string | null
  mcc: string | null
  mid: string | null
  active: boolean
  currency_code?: string
  amount_limit?: string | null
  usage_limit?: number | null
  velocity_window?: string
}

async function storedVelocityControl (db: Queryable, token: string): Promise<StoredControl | undefined> {
  const { rows } = await db.query<StoredControl>(
    `SELECT token, name, user_token, card_token, mcc, mid, active, currency_code, amount_limit::text, usage_limit, velocity_window
       FROM velocity_controls WHERE token = $1`, [token])
  return rows[0]
}

async function storedAuthControl (db: Queryable, token: string): Promise<StoredControl | undefined> {
  const { rows } = await db.query<StoredControl>('SELECT token, name, user_token, card_token, mcc, mid, active FROM auth_controls WHERE token = $1', [token])
  return rows[0]
}

async function syncVelocityControl ({ db, dryRun, invalidate }: SyncDeps, m: MarqetaVelocityControl): Promise<Outcome> {
  const scope = common(m)
  if (typeof scope === 'string') return { action: 'skipped', reason: scope }
  if (!velocityWindows.has(m.velocity_window)) return { action: 'skipped', reason: `velocity_window ${m.velocity_window} not modelled` }
  const wanted: NewVelocityControl = {
    token: m.token,
    ...(m.name !== undefined ? { name: m.name } : {}),
    association: scope.user_token !== undefined ? { user_token: scope.user_token } : {},
    currency_code: m.currency_code,
    ...(m.amount_limit !== undefined ? { amount_limit: m.amount_limit } : {}),
    ...(m.usage_limit !== undefined ? { usage_limit: m.usage_limit } : {}),
    velocity_window: m.velocity_window as VelocityWindow,
    merchant_scope: { mcc: scope.mcc, mid: scope.mid },
    active: m.active ?? true
  }
  // Validates the amount the way the admin API does (a 400 here becomes a skip with its message).
  const limitMinor = wanted.amount_limit === undefined ? null : amountMinor(wanted.amount_limit, exponentOf(wanted.currency_code, 'currency_code'), 'amount_limit').toString()
  const current = await storedVelocityControl(db, m.token)
  if (current === undefined) {
    if (dryRun === true) return { action: 'created' }
    const { scope: cacheScope } = await createVelocityControl(db, wanted)
    await invalidate?.({ controls: [cacheScope] })
    return { action: 'created' }
  }
  if (current.card_token !== null) return { action: 'skipped', reason: 'associated with a card here; Marqeta associates controls with users' }
  const same = current.name === (wanted.name ?? null) && current.user_token === (scope.user_token ?? null) &&
    current.currency_code === wanted.currency_code && current.amount_limit === limitMinor &&
    current.usage_limit === (wanted.usage_limit ?? null) && current.velocity_window === wanted.velocity_window &&
    current.mcc === (scope.mcc ?? null) && current.mid === (scope.mid ?? null) && current.active === wanted.active
  if (same) return { action: 'unchanged' }
  if (dryRun === true) return { action: 'updated' }
  await updateVelocityControl(db, wanted, limitMinor)
  await invalidate?.({ controls: [...new Set([current.user_token ?? '', scope.user_token ?? ''])] })
  return { action: 'updated' }
}

/**
 * The admin API can only create and deactivate a control; Marqeta's can also change one (PUT /velocitycontrols/{token}),
 * so the import needs this update. A deactivation still goes through the admin function, in the same transaction.
 */
async function updateVelocityControl (db: Database, c: NewVelocityControl, limitMinor: string | null): Promise<void> {
  await db.transaction(async (client) => {
    await client.query(
      `UPDATE velocity_controls SET name = $2, user_token = $3, currency_code = $4, amount_limit = $5, usage_limit = $6,
              velocity_window = $7, mcc = $8, mid = $9
        WHERE token = $1`,
      [c.token, c.name ?? null, c.association.user_token ?? null, c.currency_code, limitMinor, c.usage_limit ?? null,
        c.velocity_window, c.merchant_scope?.mcc ?? null, c.merchant_scope?.mid ?? null])
    if (c.active === false) await deactivateVelocityControl(client, c.token!)
    else await client.query('UPDATE velocity_controls SET active = true WHERE token = $1', [c.token])
  })
}

async function syncAuthControl ({ db, dryRun, invalidate }: SyncDeps, m: MarqetaAuthControl): Promise<Outcome> {
  const scope = common(m)
  if (typeof scope === 'string') return { action: 'skipped', reason: scope }
  if (scope.mcc === undefined && scope.mid === undefined) return { action: 'skipped', reason: 'no merchant_scope mcc or mid (an association-only control is not modelled here)' }
  const wanted: NewAuthControl = {
    token: m.token,
    ...(m.name !== undefined ? { name: m.name } : {}),
    association: scope.user_token !== undefined ? { user_token: scope.user_token } : {},
    merchant_scope: { mcc: scope.mcc, mid: scope.mid },
    active: m.active ?? true
  }
  const current = await storedAuthControl(db, m.token)
  if (current === undefined) {
    if (dryRun === true) return { action: 'created' }
    const { scope: cacheScope } = await createAuthControl(db, wanted)
    await invalidate?.({ controls: [cacheScope] })
    return { action: 'created' }
  }
  if (current.card_token !== null) return { action: 'skipped', reason: 'associated with a card here; Marqeta associates controls with users' }
  const same = current.name === (wanted.name ?? null) && current.user_token === (scope.user_token ?? null) &&
    current.mcc === (scope.mcc ?? null) && current.mid === (scope.mid ?? null) && current.active === wanted.active
  if (same) return { action: 'unchanged' }
  if (dryRun === true) return { action: 'updated' }
  await db.transaction(async (client) => {
    await client.query('UPDATE auth_controls SET name = $2, user_token = $3, mcc = $4, mid = $5 WHERE token = $1',
      [m.token, wanted.name ?? null, scope.user_token ?? null, scope.mcc ?? null, scope.mid ?? null])
    if (wanted.active === false) await deactivateAuthControl(client, m.token)
    else await client.query('UPDATE auth_controls SET active = true WHERE token = $1', [m.token])
  })
  await invalidate?.({ controls: [...new Set([current.user_token ?? '', scope.user_token ?? ''])] })
  return { action: 'updated' }
}

/** Marqeta's metadata is string → string; anything else is left out rather than coerced. */
function stringValues (metadata: Record<string, unknown> | undefined): Record<string, string> {
  return Object.fromEntries(Object.entries(metadata ?? {}).filter((e): e is [string, string] => typeof e[1] === 'string'))
}
