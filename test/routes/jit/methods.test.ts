import t from 'tap'
import { build } from '../../helper.js'
import { auditLedger } from '../../../src/audit.js'
import { account, cardholder, decisionOf, holdCount, holdOf, invalidate, jitRequest, postJit, velocityControl } from '../../jit-fixtures.js'

// The method families of DESIGN §4 beyond plain authorizations, at the gateway.
const app = await build(t)
const db = app.db
const users: string[] = []
const holder = async (...args: Parameters<typeof cardholder>) => {
  const ch = await cardholder(...args)
  users.push(ch.user)
  return ch
}

t.test('a stand-in authorization is approved with no funds, and the overdraft is recorded and counted', async (t) => {
  const ch = await holder(db, { fundMinor: 500 })
  const overdrawnBefore = (await app.telemetry.ledgerOverdrawn.get()).values[0]?.value ?? 0
  const body = jitRequest({ user: ch.user, card: ch.card, amount: '20.00', method: 'pgfs.authorization.standin' })
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.amount, 20)
  const token = body.gpa_order.jit_funding.token
  t.same(await account(db, ch.user), { credits_posted: 500, debits_posted: 0, debits_pending: 2000, available: -1500 })
  t.match(await holdOf(db, token), { amount: 2000, status: 'PENDING' })
  const { rows: forced } = await db.query('SELECT forced FROM hold_states WHERE jit_token = $1', [token])
  t.equal(forced[0].forced, true)
  const { rows: decision } = await db.query('SELECT overdrawn FROM decisions WHERE jit_token = $1', [token])
  t.equal(decision[0].overdrawn, true)
  // The row the relay publishes as ledger.overdrawn (src/events.ts).
  const { rows: events } = await db.query(`SELECT reference FROM transfers WHERE code = 'overdrawn' AND jit_token = $1`, [token])
  t.equal(events.length, 1, 'recorded for the ledger.overdrawn event')
  t.equal(Number(events[0].reference), -1500)
  t.equal((await app.telemetry.ledgerOverdrawn.get()).values[0]?.value, overdrawnBefore + 1, 'counted in ledger_overdrawn_total')

  // A replay moves nothing and counts nothing.
  t.equal((await postJit(app, body)).body, res.body)
  t.equal((await app.telemetry.ledgerOverdrawn.get()).values[0]?.value, overdrawnBefore + 1)
  t.match(await account(db, ch.user), { available: -1500 })
})

t.test('stand-in is never refused: a suspended card, an immediate stand-in debit', async (t) => {
  const ch = await holder(db, { cardState: 'SUSPENDED' })
  const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 3, method: 'pgfs.authorization.standin' }))
  t.equal(res.statusCode, 200, res.body)
  const debit = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 2, method: 'pgfs.auth_plus_capture.standin' }))
  t.equal(debit.statusCode, 200, debit.body)
  t.same(await account(db, ch.user), { credits_posted: 0, debits_posted: 200, debits_pending: 300, available: -500 })
})

t.test('a reversal releases at most what is left of the hold', async (t) => {
  const ch = await holder(db, { fundMinor: 10_000 })
  const auth = jitRequest({ user: ch.user, card: ch.card, amount: '60.00' })
  t.equal((await postJit(app, auth)).statusCode, 200)
  const original = auth.gpa_order.jit_funding.token
  const partial = jitRequest({ user: ch.user, card: ch.card, amount: '15.00', method: 'pgfs.authorization.reversal', original })
  t.equal((await postJit(app, partial)).statusCode, 200)
  t.match(await holdOf(db, original), { amount: 6000, remaining: 4500, status: 'PENDING' })
  t.match(await account(db, ch.user), { debits_pending: 4500, available: 5500 })
  t.equal((await postJit(app, partial)).statusCode, 200, 'a replayed reversal')
  t.match(await account(db, ch.user), { debits_pending: 4500 }, 'releases nothing more')
  const rest = jitRequest({ user: ch.user, card: ch.card, amount: '100.00', method: 'pgfs.authorization.reversal', original })
  t.equal((await postJit(app, rest)).statusCode, 200)
  t.match(await holdOf(db, original), { remaining: 0, status: 'VOIDED' })
  t.same(await account(db, ch.user), { credits_posted: 10_000, debits_posted: 0, debits_pending: 0, available: 10_000 })
})

t.test('a reversal gives the use back: a further authorization passes a usage_limit of 1', async (t) => {
  const ch = await holder(db, { fundMinor: 10_000 })
  await velocityControl(db, { user: ch.user, window: 'DAY', usageLimit: 1 })
  await invalidate(app, { controls: [ch.user] })
  const first = jitRequest({ user: ch.user, card: ch.card, amount: 10 })
  t.equal((await postJit(app, first)).statusCode, 200)
  const second = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 10 }))
  t.equal(second.json().jit_funding.decline_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED')

  const original = first.gpa_order.jit_funding.token
  const half = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 5, method: 'pgfs.authorization.reversal', original }))
  t.equal(half.statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }))).json().jit_funding.decline_reason,
    'TRANSACTION_COUNT_LIMIT_EXCEEDED', 'a partial reversal keeps the use')
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 5, method: 'pgfs.pindebit.authorization.reversal', original }))).statusCode, 200)
  t.match(await holdOf(db, original), { status: 'VOIDED' })
  const third = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 10 }))
  t.equal(third.statusCode, 200, third.body)
})

t.test('a clearing keeps the use and counts the cleared amount', async (t) => {
  const ch = await holder(db, { fundMinor: 10_000 })
  await velocityControl(db, { user: ch.user, window: 'DAY', amountLimitMinor: 3000 })
  await invalidate(app, { controls: [ch.user] })
  const auth = jitRequest({ user: ch.user, card: ch.card, amount: 10 })
  t.equal((await postJit(app, auth)).statusCode, 200)
  const clearing = jitRequest({ user: ch.user, card: ch.card, amount: 25, method: 'pgfs.authorization.clearing', original: auth.gpa_order.jit_funding.token })
  t.equal((await postJit(app, clearing)).statusCode, 200)
  t.same(await account(db, ch.user), { credits_posted: 10_000, debits_posted: 2500, debits_pending: 0, available: 7500 })
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: '5.01' }))).json().jit_funding.decline_reason, 'AMOUNT_LIMIT_EXCEEDED')
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: '5.00' }))).statusCode, 200)
})

t.test('a second clearing of a settled hold, and a force capture, are posted debits, never refused', async (t) => {
  const ch = await holder(db, { fundMinor: 1000 })
  const auth = jitRequest({ user: ch.user, card: ch.card, amount: 8 })
  t.equal((await postJit(app, auth)).statusCode, 200)
  const original = auth.gpa_order.jit_funding.token
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 8, method: 'pgfs.authorization.capture', original }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 3, method: 'pgfs.authorization.capture', original }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 4, method: 'pgfs.force_capture' }))).statusCode, 200)
  t.same(await account(db, ch.user), { credits_posted: 1000, debits_posted: 1500, debits_pending: 0, available: -500 })
})

t.test('credits and network debits at the gateway', async (t) => {
  const ch = await holder(db, { fundMinor: 1000 })
  const refund = jitRequest({ user: ch.user, card: ch.card, amount: '4.50', method: 'pgfs.refund' })
  t.equal((await postJit(app, refund)).statusCode, 200)
  t.equal((await postJit(app, refund)).statusCode, 200, 'replayed')
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method: 'pgfs.dispute.credit' }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 20, method: 'pgfs.adjustment.debit' }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method: 'pgfs.pindebit.chargeback.reversal' }))).statusCode, 200)
  t.same(await account(db, ch.user), { credits_posted: 1550, debits_posted: 2100, debits_pending: 0, available: -550 })
})

t.test('incrementals: onto the original hold of the same user only; a missing original makes a new hold', async (t) => {
  const a = await holder(db, { fundMinor: 10_000 })
  const b = await holder(db, { fundMinor: 10_000 })
  const auth = jitRequest({ user: a.user, card: a.card, amount: 10 })
  t.equal((await postJit(app, auth)).statusCode, 200)
  const original = auth.gpa_order.jit_funding.token
  const foreign = jitRequest({ user: b.user, card: b.card, amount: 5, method: 'pgfs.authorization.incremental', original })
  t.equal((await postJit(app, foreign)).statusCode, 200)
  t.match(await holdOf(db, original), { amount: 1000, remaining: 1000 }, 'another user\'s hold is untouched')
  t.match(await holdOf(db, foreign.gpa_order.jit_funding.token), { amount: 500, remaining: 500 }, 'b got a hold of its own')
  t.match(await account(db, a.user), { debits_pending: 1000 })
  t.match(await account(db, b.user), { debits_pending: 500 })

  const orphan = jitRequest({ user: a.user, card: a.card, amount: 2, method: 'pgfs.authorization.incremental', original: 'jit-never-seen' })
  t.equal((await postJit(app, orphan)).statusCode, 200)
  t.match(await holdOf(db, orphan.gpa_order.jit_funding.token), { amount: 200 })
  t.equal(await holdCount(db, a.user), 2)
})

t.test('an account verification of 0 is approved and holds nothing; a balance inquiry of a suspended cardholder is declined', async (t) => {
  const ch = await holder(db, { fundMinor: 1000 })
  const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 0, method: 'pgfs.authorization.account_verification' }))
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.amount, 0)
  t.equal(await holdCount(db, ch.user), 0)

  const suspended = await holder(db, { status: 'SUSPENDED', fundMinor: 1000 })
  const inquiry = jitRequest({ user: suspended.user, card: suspended.card, amount: 0, method: 'pgfs.pindebit.balanceinquiry' })
  const declined = await postJit(app, inquiry)
  t.equal(declined.statusCode, 402)
  t.equal(declined.json().jit_funding.decline_reason, 'CARDHOLDER_NOT_ACTIVE')
  t.match(await decisionOf(db, inquiry.gpa_order.jit_funding.token), { result: 'declined' })
})

t.test('the ledger invariants hold for every user of this file, overdrafts included', async (t) => {
  t.ok(users.length > 10)
  t.same((await auditLedger(db, { userTokens: users })).violations, [])
})
