import t from 'tap'
import type { Test } from 'tap'
import { build, inWaves } from '../../helper.js'
import { auditLedger } from '../../../src/audit.js'
import { account, cardholder, decisionOf, holdCount, holdOf, jitRequest, postJit, type Cardholder } from '../../jit-fixtures.js'

// The longest deadline the config allows, so that concurrent requests on one account never meet it (see burst below).
const app = await build(t, { JIT_DEADLINE_MS: '2900' })
const db = app.db

t.test('a replayed jit token gets the first answer byte for byte and no second hold', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: '25.00' })
  const first = await postJit(app, body)
  t.equal(first.statusCode, 200)
  const again = await postJit(app, body)
  t.equal(again.statusCode, first.statusCode)
  t.equal(again.body, first.body)
  t.equal(again.headers['content-type'], first.headers['content-type'])
  t.equal(await holdCount(db, ch.user), 1)
  t.match(await account(db, ch.user), { debits_pending: 2500, available: 7500 })

  // Even when the replay would now be decided otherwise (other amount, no money left).
  const changed = jitRequest({ user: ch.user, card: ch.card, amount: '99.99', token: body.gpa_order.jit_funding.token })
  const third = await postJit(app, changed)
  t.equal(third.statusCode, 200)
  t.equal(third.body, first.body)
  t.match(await account(db, ch.user), { debits_pending: 2500, available: 7500 })
})

t.test('a replayed decline is the same decline, also after the reason went away', async (t) => {
  const ch = await cardholder(db, { fundMinor: 100 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 5 })
  const first = await postJit(app, body)
  t.equal(first.statusCode, 402)
  t.equal(first.json().jit_funding.decline_reason, 'INSUFFICIENT_FUNDS')
  await db.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: `${ch.user}:topup`, user_token: ch.user, currency_code: 'USD', amount_minor: 10_000, forced: true }])
  const again = await postJit(app, body)
  t.equal(again.statusCode, 402)
  t.equal(again.body, first.body)
  t.equal(await holdCount(db, ch.user), 0)
})

t.test('50 concurrent copies of one token: one hold and 50 identical answers', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: '7.77' })
  const answers = await Promise.all(Array.from({ length: 50 }, () => postJit(app, body)))
  t.same(new Set(answers.map((r) => r.statusCode)), new Set([200]))
  t.equal(new Set(answers.map((r) => r.body)).size, 1, 'every copy got the same bytes')
  t.equal(await holdCount(db, ch.user), 1)
  t.match(await holdOf(db, body.gpa_order.jit_funding.token), { amount: 777, remaining: 777, status: 'PENDING' })
  t.match(await account(db, ch.user), { debits_pending: 777, available: 10_000 - 777 })
  const { rows } = await db.query('SELECT count(*)::int AS n FROM hold_states WHERE jit_token = $1', [body.gpa_order.jit_funding.token])
  t.equal(rows[0].n, 1, 'one journal entry')
  t.match(await decisionOf(db, body.gpa_order.jit_funding.token), { result: 'approved', status_code: 200 })
  t.same((await auditLedger(db, { userTokens: [ch.user] })).violations, [])
})

/**
 * Fires `n` requests, CONCURRENCY at a time on one account, and checks exact counts: exactly `capacity` approved,
 * every other one declined for funds, never anything else. The deadline is made irrelevant rather than tolerated:
 * JIT_DEADLINE_MS is at its maximum (2900 ms) and at most CONCURRENCY requests queue on the row lock, each decided in
 * milliseconds, so a deadline decline here is a failure, not noise.
 */
const CONCURRENCY = 10

async function burst (t: Test, ch: Cardholder, o: { n: number, capacity: number, fundMinor: number, amount: string, method: string }) {
  const send = () => postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: o.amount, method: o.method }))
  const answers = await inWaves(o.n, CONCURRENCY, send)
  t.same(answers.filter((r) => r.statusCode !== 200 && r.statusCode !== 402).map((r) => `${r.statusCode} ${r.body}`), [], 'every request was approved or declined')
  const approved = answers.filter((r) => r.statusCode === 200).length
  const reasons = answers.filter((r) => r.statusCode === 402).map((r) => r.json().jit_funding)
  t.same(reasons.filter((j) => j.decline_reason !== 'INSUFFICIENT_FUNDS').map((j) => `${j.decline_reason}: ${j.memo}`), [], 'declined only for funds')
  t.equal(approved, o.capacity, `exactly the funds are approved (${approved} of ${o.n})`)
  t.equal(reasons.length, o.n - o.capacity, 'every other request declined')
  const unit = Math.round(Number(o.amount) * 100)
  t.equal((await account(db, ch.user))?.available, o.fundMinor - approved * unit, 'the account holds exactly the approvals')
  const more = await send()
  t.equal(more.statusCode, 402, 'nothing left for one more')
  t.equal(more.json().jit_funding.decline_reason, 'INSUFFICIENT_FUNDS')
  return (await account(db, ch.user))!
}

t.test('100 authorizations of 1.00 on 50.00, 10 at a time: exactly 50 approved, never overdrawn', async (t) => {
  const ch = await cardholder(db, { fundMinor: 5000 })
  const after = await burst(t, ch, { n: 100, capacity: 50, fundMinor: 5000, amount: '1.00', method: 'pgfs.authorization' })
  t.same(after, { credits_posted: 5000, debits_posted: 0, debits_pending: 5000, available: 0 })
  t.equal(await holdCount(db, ch.user), 50)
  // The journal agrees with the columns.
  const { rows } = await db.query(`SELECT coalesce(sum(hold_minor), 0)::int AS pending FROM decisions WHERE user_token = $1`, [ch.user])
  t.equal(rows[0].pending, 5000)
  t.same((await auditLedger(db, { userTokens: [ch.user] })).violations, [])
})

t.test('concurrent immediate debits on one account never overdraw either', async (t) => {
  const ch = await cardholder(db, { fundMinor: 1000 })
  const after = await burst(t, ch, { n: 30, capacity: 20, fundMinor: 1000, amount: '0.50', method: 'pgfs.auth_plus_capture' })
  t.same(after, { credits_posted: 1000, debits_posted: 1000, debits_pending: 0, available: 0 })
  t.same((await auditLedger(db, { userTokens: [ch.user] })).violations, [])
})
