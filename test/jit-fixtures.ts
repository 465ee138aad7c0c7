import { readFileSync } from 'node:fs'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Queryable } from '../src/db.js'
import { eventually, jitHeaders, uniq } from './helper.js'

/** Marqeta example messages, copied from the team's shared fixtures so that the repository tests on its own. */
export const fixturesDir = new URL('./fixtures/marqeta/', import.meta.url)

// Fields whose values are Marqeta tokens: rewritten so that parallel runs never share a user, card or JIT token.
const tokenFields = new Set([
  'token', 'user_token', 'acting_user_token', 'card_token', 'original_jit_funding_token',
  'incremental_authorization_jit_funding_tokens', 'preceding_related_transaction_token', 'transaction_id'
])

/** Maps each fixture token to one unique token, the same one in every fixture loaded through it. */
export class Tokens {
  private readonly map = new Map<string, string>()

  of (original: string): string {
    let token = this.map.get(original)
    if (token === undefined) {
      token = uniq(original)
      this.map.set(original, token)
    }
    return token
  }
}

function rewrite (value: unknown, tokens: Tokens, inTokenField: boolean): unknown {
  if (typeof value === 'string') return inTokenField ? tokens.of(value) : value
  if (Array.isArray(value)) return value.map((v) => rewrite(v, tokens, inTokenField))
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewrite(v, tokens, tokenFields.has(k))]))
  }
  return value
}

/** A fixture with its tokens replaced through `tokens` (e.g. user-ada → user-ada-3f9c…). */
export function loadFixture<T = any> (name: string, tokens: Tokens): T {
  const raw = JSON.parse(readFileSync(new URL(name, fixturesDir), 'utf8'))
  return rewrite(raw, tokens, false) as T
}

export interface Cardholder { user: string, card: string }

/** A user (ACTIVE unless told) with one card, both with unique tokens; funded when `fundMinor` is given. */
export async function cardholder (db: Queryable, opts: { status?: string, cardState?: string, fundMinor?: number, user?: string, card?: string } = {}): Promise<Cardholder> {
  const user = opts.user ?? uniq('u')
  const card = opts.card ?? uniq('c')
  await db.query('INSERT INTO users (token, status) VALUES ($1, $2)', [user, opts.status ?? 'ACTIVE'])
  await db.query('INSERT INTO cards (token, user_token, state) VALUES ($1, $2, $3)', [card, user, opts.cardState ?? 'ACTIVE'])
  if (opts.fundMinor !== undefined) await fund(db, user, opts.fundMinor)
  return { user, card }
}

/** Credits the user's account from the program funding account (a forced credit, as a load would). */
export async function fund (db: Queryable, user: string, amountMinor: number, currency = 'USD'): Promise<void> {
  const { rows } = await db.query('SELECT ledger_apply($1::jsonb) AS r', [{
    kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: currency, amount_minor: amountMinor, forced: true
  }])
  if (rows[0].r.status !== 'applied') throw new Error(`load failed: ${JSON.stringify(rows[0].r)}`)
}

export interface AccountState { credits_posted: number, debits_posted: number, debits_pending: number, available: number }

/** The user's account columns in minor units (numbers: test amounts stay far below 2^53). */
export async function account (db: Queryable, user: string, currency = 'USD'): Promise<AccountState | undefined> {
  const { rows } = await db.query(`SELECT credits_posted::text AS cp, debits_posted::text AS dp, debits_pending::text AS dpe
                                     FROM accounts WHERE user_token = $1 AND currency_code = $2`, [user, currency])
  if (rows.length === 0) return undefined
  const [cp, dp, dpe] = [Number(rows[0].cp), Number(rows[0].dp), Number(rows[0].dpe)]
  return { credits_posted: cp, debits_posted: dp, debits_pending: dpe, available: cp - dp - dpe }
}

export async function holdOf (db: Queryable, jitToken: string): Promise<{ amount: number, remaining: number, posted: number, status: string } | undefined> {
  const { rows } = await db.query(`SELECT h.amount::text, h.remaining::text, h.posted::text, h.status
                                     FROM hold_states h WHERE h.jit_token = hold_root($1)`, [jitToken])
  const r = rows[0]
  return r === undefined ? undefined : { amount: Number(r.amount), remaining: Number(r.remaining), posted: Number(r.posted), status: r.status }
}

export async function holdCount (db: Queryable, user: string): Promise<number> {
  const { rows } = await db.query('SELECT count(*)::int AS n FROM hold_states WHERE user_token = $1', [user])
  return rows[0].n
}

export async function decisionOf (db: Queryable, jitToken: string): Promise<{ result: string, status_code: number, decline_reason: string | null, response: string } | undefined> {
  const { rows } = await db.query('SELECT result, status_code, decline_reason, response FROM decisions WHERE jit_token = $1', [jitToken])
  return rows[0]
}

export interface JitOptions {
  user: string
  card?: string
  token?: string
  method?: string
  amount?: unknown
  currency?: string
  mcc?: string
  mid?: string
  original?: string
  incrementals?: string[]
  actingUser?: string
  partialCapable?: boolean
}

/** A JIT funding request shaped like jit-authorization.json, for the given cardholder and amount. */
export function jitRequest (o: JitOptions): Record<string, any> {
  const jit: Record<string, unknown> = {
    token: o.token ?? uniq('jit'),
    method: o.method ?? 'pgfs.authorization',
    user_token: o.user,
    amount: o.amount ?? 1
  }
  if (o.actingUser !== undefined) jit.acting_user_token = o.actingUser
  if (o.original !== undefined) jit.original_jit_funding_token = o.original
  if (o.incrementals !== undefined) jit.incremental_authorization_jit_funding_tokens = o.incrementals
  return {
    type: 'authorization',
    state: 'PENDING',
    token: uniq('txn'),
    user_token: o.user,
    card_token: o.card,
    amount: o.amount ?? 1,
    currency_code: o.currency ?? 'USD',
    card_acceptor: { mid: o.mid ?? '000000091234', mcc: o.mcc ?? '5411', name: 'Corner Grocery' },
    pos: { partial_approval_capable: o.partialCapable ?? false },
    gpa_order: { jit_funding: jit }
  }
}

/** POSTs a JIT request with the gateway's credentials (or the given headers). */
export function postJit (app: FastifyInstance, body: unknown, headers: Record<string, string> = jitHeaders): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'POST', url: '/marqeta/jit', headers, payload: body as Record<string, unknown> })
}

/** Tells the context cache (if any) about rows this test wrote with SQL, as the admin API would. */
export async function invalidate (app: FastifyInstance, what: { users?: string[], cards?: string[], controls?: string[] }): Promise<void> {
  await app.invalidateContext(what)
}

export interface VelocityControlOptions {
  user?: string | null
  card?: string | null
  window: 'DAY' | 'WEEK' | 'MONTH' | 'LIFETIME' | 'TRANSACTION'
  amountLimitMinor?: number | null
  usageLimit?: number | null
  mcc?: string | null
  mid?: string | null
  currency?: string
  createdTime?: Date
}

/** A velocity control row (what POST /v1/velocitycontrols writes); returns its token. */
export async function velocityControl (db: Queryable, o: VelocityControlOptions): Promise<string> {
  const token = uniq('vc')
  await db.query(`INSERT INTO velocity_controls (token, user_token, card_token, currency_code, amount_limit, usage_limit, velocity_window, mcc, mid, created_time)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, coalesce($10, now()))`,
  [token, o.user ?? null, o.card ?? null, o.currency ?? 'USD', o.amountLimitMinor ?? null, o.usageLimit ?? null, o.window, o.mcc ?? null, o.mid ?? null, o.createdTime ?? null])
  return token
}

/** An auth control row (blocks the merchants it scopes); returns its token. */
export async function authControl (db: Queryable, o: { user?: string | null, card?: string | null, mcc?: string | null, mid?: string | null }): Promise<string> {
  const token = uniq('ac')
  await db.query('INSERT INTO auth_controls (token, user_token, card_token, mcc, mid) VALUES ($1, $2, $3, $4, $5)',
    [token, o.user ?? null, o.card ?? null, o.mcc ?? null, o.mid ?? null])
  return token
}

/** A past use counted by velocity windows, as an approved purchase at `createdAt` would have left. */
export async function pastSpend (db: Queryable, o: { user: string, card?: string, amountMinor: number, uses?: number, createdAt: Date, mcc?: string, mid?: string, currency?: string }): Promise<void> {
  await db.query(`INSERT INTO spend (jit_token, user_token, card_token, currency_code, mcc, mid, amount, uses, created_at)
                  VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
  [uniq('past'), o.user, o.card ?? null, o.currency ?? 'USD', o.mcc ?? '5411', o.mid ?? '000000091234', o.amountMinor, o.uses ?? 1, o.createdAt])
}

/**
 * Waits until @fastify/under-pressure stops shedding: right after a boot its (cumulative) event-loop utilization is
 * near 1 and non-JIT routes answer 503 for a moment. The JIT route itself is never shed.
 */
export async function untilNotUnderPressure (app: FastifyInstance): Promise<void> {
  await eventually(async () => !app.isUnderPressure(), 10_000, 20)
}
