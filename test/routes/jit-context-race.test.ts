import t, { type Test } from 'tap'
import pg from 'pg'
import { TEST_DATABASE_URL, adminHeaders, eventually, jitHeaders, spawnServer, uniq, type SpawnedServer } from '../helper.js'
import { decideJit, type DecisionDeps } from '../../src/jit/decide.js'
import { PgContextSource } from '../../src/jit/context.js'
import { jitFundingOf, type Transaction } from '../../src/marqeta.js'
import { cardholder, jitRequest } from '../jit-fixtures.js'

// Two server processes decide for one card while a change goes through one of them (DESIGN §8: once the change is
// answered, no decision on any instance uses the old value). The order that counts is the database's: the decisions
// a snapshot taken right after the answer cannot see committed after the change, and each of them must be a decline.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
t.teardown(() => pool.end())

async function start (t: Test): Promise<SpawnedServer> {
  // Long-lived local entries, so that only the invalidation and the version check can make the change seen.
  const server = spawnServer(t, { CACHE_LOCAL_TTL_MS: '600000', JIT_DEADLINE_MS: '2900', LOG_LEVEL: 'warn' })
  await eventually(async () => (await fetch(`http://127.0.0.1:${server.port}/ready`).catch(() => undefined))?.status === 200, 30_000, 100)
    .catch((err: Error) => { throw new Error(`${err.message}: server on ${server.port} not ready; it said: ${server.output().slice(-600)}`) })
  return server
}

interface Answer { status: number, body: { decline_reason?: string, memo?: string, token: string }, sentAfterChange: boolean }

/**
 * `acting`: the card belongs to another user, who uses it through acting_user_token while jit_funding.user_token (whose
 * account is funded and decides) stays the first user; `change` gets the card's owner.
 */
async function underTraffic (t: Test, change: (admin: string, card: string, user: string) => Promise<Response>, o: { acting?: boolean } = {}): Promise<{ answers: Answer[], after: Array<{ result: string, decline_reason: string | null }>, before: number }> {
  const [s1, s2] = await Promise.all([start(t), start(t)])
  const user = uniq('race-u')
  const card = uniq('race-c')
  const owner = o.acting === true ? uniq('race-owner') : user
  await pool.query('INSERT INTO users (token) VALUES ($1), ($2) ON CONFLICT DO NOTHING', [user, owner])
  await pool.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, owner])
  const acting = o.acting === true ? { acting_user_token: owner } : {}
  await pool.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: 'USD', amount_minor: 100_000_000, forced: true }])
  const answers: Answer[] = []
  let changed = false
  let stop = false
  const post = async (port: number): Promise<void> => {
    const sentAfterChange = changed
    const res = await fetch(`http://127.0.0.1:${port}/marqeta/jit`, {
      method: 'POST',
      headers: { ...jitHeaders, 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'authorization', token: uniq('t'), card_token: card, currency_code: 'USD', card_acceptor: { mcc: '5411', mid: 'm1' }, gpa_order: { jit_funding: { token: uniq('race-j'), method: 'pgfs.authorization', user_token: user, ...acting, amount: '1.00' } } })
    })
    answers.push({ status: res.status, body: (await res.json()).jit_funding, sentAfterChange })
  }
  // Both processes warm (their caches hold the context), then three request loops on each.
  await post(s1.port)
  await post(s2.port)
  const loops = [s1, s2, s1, s2, s1, s2].map(async (s) => { while (!stop) await post(s.port) })
  await eventually(async () => answers.filter((a) => a.status === 200).length >= 30, 20_000, 10)
  const res = await change(`http://127.0.0.1:${s1.port}`, card, owner)
  t.ok(res.status === 200 || res.status === 201, `the change is answered (${res.status})`)
  changed = true
  const { rows: [seen] } = await pool.query('SELECT array_agg(jit_token) AS tokens FROM decisions WHERE user_token = $1', [user])
  const answeredBefore = answers.length
  await eventually(async () => answers.length >= answeredBefore + 60, 20_000, 10)
  stop = true
  await Promise.all(loops)
  const { rows: after } = await pool.query('SELECT result, decline_reason FROM decisions WHERE user_token = $1 AND NOT (jit_token = ANY($2::text[]))', [user, seen.tokens])
  return { answers, after, before: seen.tokens.length }
}

t.test('a card suspended through one process while both decide for it: every decision committed after the answer declines', async (t) => {
  const { answers, after, before } = await underTraffic(t, async (admin, card) =>
    await fetch(`${admin}/v1/cards/${card}`, { method: 'PATCH', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ state: 'SUSPENDED' }) }))
  t.ok(before > 30 && after.length >= 30, `decisions before (${before}) and after (${after.length}) the answer`)
  t.same(after.filter((d) => d.result !== 'declined'), [], 'no approval committed after the answer')
  t.same(answers.filter((a) => a.sentAfterChange && a.status !== 402), [], 'no approval for a request sent after the answer')
  t.ok(after.filter((d) => d.decline_reason === 'CARD_NOT_ACTIVE').length > 0, 'declined for the card state')
})

t.test('an auth control created through one process while both decide: every decision committed after the answer declines', async (t) => {
  const { answers, after, before } = await underTraffic(t, async (admin, card) =>
    await fetch(`${admin}/v1/authcontrols`, { method: 'POST', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ association: { card_token: card }, merchant_scope: { mcc: '5411' } }) }))
  t.ok(before > 30 && after.length >= 30, `decisions before (${before}) and after (${after.length}) the answer`)
  t.same(after.filter((d) => d.result !== 'declined'), [], 'no approval committed after the answer')
  t.same(answers.filter((a) => a.sentAfterChange && a.status !== 402), [], 'no approval for a request sent after the answer')
  t.same([...new Set(after.map((d) => d.decline_reason))], ['TRANSACTION_NOT_PERMITTED'], 'declined by the control')
})

t.test('a card used through acting_user_token, suspended through one process while both decide: every decision committed after the answer declines', async (t) => {
  // Only the owner's version is bumped and only the owner's rows locked by the change; the decisions lock the funding
  // user's account.
  const { answers, after, before } = await underTraffic(t, async (admin, card) =>
    await fetch(`${admin}/v1/cards/${card}`, { method: 'PATCH', headers: { ...adminHeaders, 'content-type': 'application/json' }, body: JSON.stringify({ state: 'SUSPENDED' }) }), { acting: true })
  t.ok(before > 30 && after.length >= 30, `decisions before (${before}) and after (${after.length}) the answer`)
  t.same(after.filter((d) => d.result !== 'declined'), [], 'no approval committed after the answer')
  t.same(answers.filter((a) => a.sentAfterChange && a.status !== 402), [], 'no approval for a request sent after the answer')
  t.ok(after.filter((d) => d.decline_reason === 'CARD_NOT_ACTIVE').length > 0, 'declined for the card state')
})

t.test('acting user, made to happen: a decision that read the owner\'s version commits before the owner\'s card change is answered', async (t) => {
  const db = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 4 })
  t.teardown(() => db.end())
  const funding = await cardholder(db, { fundMinor: 100_00 })
  const owner = await cardholder(db)
  // The decision is held between its version check and its commit: its last statement credits the program account
  // of the funding user's shard, locked here.
  const holder = await db.connect()
  t.teardown(() => holder.release())
  await holder.query('BEGIN')
  await holder.query("SELECT 1 FROM accounts WHERE id = program_account('USD', program_shard($1)) FOR UPDATE", [funding.user])
  const holderPid = (await holder.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
  const deps: DecisionDeps = { pool: db, context: new PgContextSource(db), now: () => new Date(), partialApproval: false, holdExpirationDays: 7, stage: () => {} }
  const txn = jitRequest({ user: funding.user, actingUser: owner.user, card: owner.card, amount: '1.00' }) as Transaction
  const decision = decideJit(deps, txn, jitFundingOf(txn)!, performance.now() + 10_000)
  await eventually(async () => (await db.query('SELECT 1 FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))', [holderPid])).rowCount === 1)

  // The owner's card suspended meanwhile, as the admin API does it; then, once it is answered, which decisions exist.
  const changer = await db.connect()
  t.teardown(() => changer.release())
  const changerPid = (await changer.query('SELECT pg_backend_pid() AS pid')).rows[0].pid
  let answered = false
  const change = changer.query("UPDATE cards SET state = 'SUSPENDED' WHERE token = $1", [owner.card]).then(() => { answered = true })
  const waiting = async (): Promise<boolean> => (await db.query("SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", [changerPid])).rowCount === 1
  await eventually(async () => answered || await waiting())
  const committed = async (): Promise<number> => (await db.query('SELECT count(*)::int AS n FROM decisions WHERE user_token = $1', [funding.user])).rows[0].n
  // Answered while the decision is held (the bug): what had committed by then is read before the decision may commit.
  let before = answered ? await committed() : undefined
  await holder.query('ROLLBACK')
  await change
  before ??= await committed()
  t.equal((await decision).statusCode, 200, 'the decision that read the old version approves')
  t.equal(before, 1, 'it committed before the change was answered')
})
