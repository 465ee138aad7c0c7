import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import amqp from 'amqplib'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import type { Queryable } from '../../src/db.js'
import { signBody } from '../../src/webhooks/signature.js'
import { build, eventually, uniq, webhookHeaders, type Teardown } from '../helper.js'

export const RABBITMQ_URL = process.env.RABBITMQ_URL ?? 'amqp://guest:guest@127.0.0.1:5672'
/** Marqeta example messages, copied from the team's shared fixtures so that the repository tests on its own. */
export const FIXTURES = process.env.MARQETA_FIXTURES ?? new URL('../fixtures/marqeta/', import.meta.url).pathname

export interface Tapped {
  routingKey: string
  messageId?: string
  body: any
  headers: Record<string, unknown>
}

/**
 * build() plus a connected broker: the broker's first connection attempt may time out on a loaded machine (the app
 * then boots degraded and keeps reconnecting), and these tests are about what happens once it is there.
 */
export async function buildConnected (t: Teardown, overrides: Record<string, string> = {}): Promise<FastifyInstance> {
  const app = await build(t, overrides)
  await eventually(async () => app.broker.connected, 20_000)
  return app
}

/**
 * An exclusive, auto-deleted queue bound to `bindings` on jit.events: sees a copy of every matching message whatever
 * app instance consumes the work queues.
 */
export async function tapExchange (t: Teardown, bindings: string[], exchange = 'jit.events'): Promise<Tapped[]> {
  const connection = await amqp.connect(RABBITMQ_URL)
  const channel = await connection.createChannel()
  await channel.assertExchange(exchange, 'topic', { durable: true })
  const { queue } = await channel.assertQueue('', { exclusive: true, autoDelete: true })
  for (const binding of bindings) await channel.bindQueue(queue, exchange, binding)
  const seen: Tapped[] = []
  await channel.consume(queue, (msg) => {
    if (msg === null) return
    seen.push({ routingKey: msg.fields.routingKey, messageId: msg.properties.messageId, body: JSON.parse(msg.content.toString()), headers: msg.properties.headers ?? {} })
  }, { noAck: true })
  t.teardown(async () => {
    if (exchange !== 'jit.events') await channel.deleteExchange(exchange).catch(() => {})
    await connection.close().catch(() => {})
  })
  return seen
}

/** A user with one card and, optionally, a load (minor units) credited through the ledger. */
export async function createCardholder (db: Queryable, loadMinor = 0, currency = 'USD'): Promise<{ user: string, card: string }> {
  const user = uniq('u')
  const card = uniq('c')
  await db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await db.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  if (loadMinor > 0) {
    await ledger(db, { kind: 'credit', effect_key: `${user}:load`, user_token: user, currency_code: currency, amount_minor: loadMinor, forced: true })
  }
  return { user, card }
}

export async function ledger (db: Queryable, p: Record<string, unknown>): Promise<{ status: string, approved_minor: number }> {
  const { rows } = await db.query('SELECT ledger_apply($1::jsonb) AS r', [JSON.stringify(p)])
  return rows[0].r
}

/** What the JIT path does for an approved authorization: a hold keyed `${jit}:hold`. */
export async function jitHold (db: Queryable, user: string, card: string, jit: string, amountMinor: number, original?: string): Promise<void> {
  const r = await ledger(db, {
    kind: 'hold', effect_key: `${jit}:hold`, user_token: user, currency_code: 'USD', amount_minor: amountMinor, jit_token: jit,
    card_token: card, original_jit_token: original, hold_expiration_days: 7
  })
  if (r.status !== 'applied') throw new Error(`hold ${jit} not applied: ${JSON.stringify(r)}`)
}

export async function jitDebit (db: Queryable, user: string, card: string, jit: string, amountMinor: number): Promise<void> {
  const r = await ledger(db, { kind: 'debit', effect_key: `${jit}:debit`, user_token: user, currency_code: 'USD', amount_minor: amountMinor, jit_token: jit, card_token: card })
  if (r.status !== 'applied') throw new Error(`debit ${jit} not applied: ${JSON.stringify(r)}`)
}

export interface Balances { available: number, ledger: number, pending: number, debitsPosted: number, creditsPosted: number }

export async function balances (db: Queryable, user: string, currency = 'USD'): Promise<Balances> {
  const { rows } = await db.query(
    `SELECT credits_posted, debits_posted, debits_pending FROM accounts WHERE user_token = $1 AND currency_code = $2`, [user, currency])
  const a = rows[0] ?? { credits_posted: 0, debits_posted: 0, debits_pending: 0 }
  const credits = Number(a.credits_posted)
  const debits = Number(a.debits_posted)
  const pending = Number(a.debits_pending)
  return { available: credits - debits - pending, ledger: credits - debits, pending, debitsPosted: debits, creditsPosted: credits }
}

export async function holdOf (db: Queryable, jit: string): Promise<{ status: string, amount: number, remaining: number, posted: number } | undefined> {
  const { rows } = await db.query('SELECT status, amount, remaining, posted FROM hold_states WHERE jit_token = hold_root($1)', [jit])
  if (rows.length === 0) return undefined
  return { status: rows[0].status, amount: Number(rows[0].amount), remaining: Number(rows[0].remaining), posted: Number(rows[0].posted) }
}

export async function effectExists (db: Queryable, key: string): Promise<boolean> {
  // An effect is a transfer with the key as its id, or, for a JIT token's hold, the decision that holds the money.
  const { rowCount } = await db.query(`SELECT 1 FROM transfers WHERE id = $1
    UNION ALL SELECT 1 FROM decisions WHERE $1 LIKE '%:hold' AND jit_token = left($1, -5) AND hold_minor IS NOT NULL`, [key])
  return (rowCount ?? 0) > 0
}

export function fixture (name: string): any {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8'))
}

/** Replaces every occurrence of the fixture's tokens with this test's own (a JSON-level search and replace). */
export function withTokens<T> (value: T, tokens: Record<string, string>): T {
  let text = JSON.stringify(value)
  for (const [from, to] of Object.entries(tokens).sort((a, b) => b[0].length - a[0].length)) text = text.split(`"${from}"`).join(`"${to}"`)
  return JSON.parse(text)
}

export async function postWebhook (app: FastifyInstance, body: unknown, options: { secret?: string, algorithm?: 'sha256' | 'sha1', headers?: Record<string, string> } = {}): Promise<LightMyRequestResponse> {
  const payload = typeof body === 'string' ? body : JSON.stringify(body)
  const headers: Record<string, string> = { ...webhookHeaders, 'content-type': 'application/json', ...options.headers }
  if (options.secret !== undefined) headers['x-marqeta-signature'] = signBody(payload, options.secret, options.algorithm)
  return await app.inject({ method: 'POST', url: '/marqeta/webhooks', headers, payload })
}
