import t from 'tap'
import type { Test } from 'tap'
import { build, uniq } from '../../helper.js'
import { windowStart } from '../../../src/jit/velocity.js'
import {
  account, authControl, cardholder, decisionOf, holdCount, invalidate, jitRequest, pastSpend, postJit, velocityControl,
  type Cardholder, type JitOptions
} from '../../jit-fixtures.js'

const app = await build(t)
const db = app.db

/** Sends one authorization and checks it is declined for `reason`, with a memo, and left nothing but its record. */
async function expectDecline (t: Test, ch: Cardholder, reason: string, o: Partial<JitOptions> = {}): Promise<Record<string, any>> {
  const empty = { credits_posted: 0, debits_posted: 0, debits_pending: 0, available: 0 }
  const before = await account(db, ch.user) ?? empty
  const holdsBefore = await holdCount(db, ch.user)
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 10, ...o })
  const res = await postJit(app, body)
  t.equal(res.statusCode, 402, res.body)
  const jit = res.json().jit_funding
  t.equal(jit.decline_reason, reason)
  t.type(jit.memo, 'string', 'the internal reason is in the memo')
  t.equal(jit.token, body.gpa_order.jit_funding.token)
  t.equal(jit.method, body.gpa_order.jit_funding.method)
  t.equal(jit.user_token, ch.user)
  t.match(await decisionOf(db, jit.token), { result: 'declined', status_code: 402, decline_reason: reason })
  t.equal(await holdCount(db, ch.user), holdsBefore, 'no hold')
  t.same(await account(db, ch.user) ?? empty, before, 'no money moved')
  return jit
}

t.test('INVALID_CARD: an unknown card, and a card of another user', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  await expectDecline(t, { ...ch, card: uniq('nocard') }, 'INVALID_CARD')
  const other = await cardholder(db, { fundMinor: 10_000 })
  await expectDecline(t, { user: ch.user, card: other.card }, 'INVALID_CARD')
  await expectDecline(t, ch, 'INVALID_CARD', { card: undefined })
})

t.test('a card of the acting user is accepted', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const parent = await cardholder(db)
  const res = await postJit(app, jitRequest({ user: ch.user, card: parent.card, actingUser: parent.user, amount: 3 }))
  t.equal(res.statusCode, 200, res.body)
  t.equal((await account(db, ch.user))?.available, 9700, 'the money is the user_token\'s')
})

t.test('CARD_NOT_ACTIVE, CARDHOLDER_NOT_ACTIVE and CLOSED_ACCOUNT', async (t) => {
  for (const state of ['SUSPENDED', 'TERMINATED', 'UNACTIVATED']) {
    await expectDecline(t, await cardholder(db, { cardState: state, fundMinor: 10_000 }), 'CARD_NOT_ACTIVE')
  }
  await expectDecline(t, await cardholder(db, { status: 'SUSPENDED', fundMinor: 10_000 }), 'CARDHOLDER_NOT_ACTIVE')
  await expectDecline(t, await cardholder(db, { status: 'CLOSED', fundMinor: 10_000 }), 'CLOSED_ACCOUNT')
})

t.test('INVALID_AMOUNT: too many decimals, negative, exponent, zero, 10^12, not a number', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const cases: Array<[unknown, number]> = [
    ['12.345', 12.345], [12.345, 12.345], [-5, -5], ['-5.00', -5], ['1e3', 0], ['1E3', 0], [0, 0], ['0.00', 0],
    ['1000000000000', 1e12], [1e12, 1e12], ['abc', 0], ['', 0], ['12.5.1', 0], ['0x10', 0]
  ]
  for (const [amount, echoed] of cases) {
    const jit = await expectDecline(t, ch, 'INVALID_AMOUNT', { amount })
    t.equal(jit.amount, echoed, `${JSON.stringify(amount)} is echoed as ${echoed}`)
  }
  const jit = await expectDecline(t, ch, 'INVALID_AMOUNT', { amount: 1.5, currency: 'JPY' })
  t.match(jit.memo, /decimals/, 'JPY has no minor unit')
})

t.test('12.5, "12.50" and "12.500" are the same amount', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  for (const amount of [12.5, '12.50', '12.500', ' 12.5']) {
    const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount }))
    t.equal(res.statusCode, 200, res.body)
    t.equal(res.json().jit_funding.amount, 12.5)
  }
  t.match(await account(db, ch.user), { debits_pending: 5000, available: 5000 })
  t.equal(await holdCount(db, ch.user), 4)
})

t.test('TRANSACTION_NOT_PERMITTED by MCC, by MID and by a program-wide control', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  await authControl(db, { user: ch.user, mcc: '7995' })
  await authControl(db, { card: ch.card, mid: 'MID-BLOCKED-1' })
  await invalidate(app, { controls: [ch.user] })
  t.match((await expectDecline(t, ch, 'TRANSACTION_NOT_PERMITTED', { mcc: '7995' })).memo, /auth control/)
  await expectDecline(t, ch, 'TRANSACTION_NOT_PERMITTED', { mid: 'MID-BLOCKED-1' })
  const ok = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, mcc: '5411', mid: 'MID-OK' }))
  t.equal(ok.statusCode, 200, 'other merchants pass')

  // Program-wide: scoped to a merchant of this test only, so that parallel test files are not affected.
  const mid = uniq('MID')
  const program = await authControl(db, { mid })
  t.teardown(() => db.query('DELETE FROM auth_controls WHERE token = $1', [program]))
  await invalidate(app, { controls: [''] })
  await expectDecline(t, ch, 'TRANSACTION_NOT_PERMITTED', { mid })
  await expectDecline(t, await cardholder(db, { fundMinor: 10_000 }), 'TRANSACTION_NOT_PERMITTED', { mid })

  // A scope with both MCC and MID needs both to match.
  const both = await cardholder(db, { fundMinor: 10_000 })
  await authControl(db, { user: both.user, mcc: '5999', mid: 'MID-BOTH' })
  await invalidate(app, { controls: [both.user] })
  t.equal((await postJit(app, jitRequest({ user: both.user, card: both.card, mcc: '5999', mid: 'MID-OTHER' }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: both.user, card: both.card, mcc: '5411', mid: 'MID-BOTH' }))).statusCode, 200)
  await expectDecline(t, both, 'TRANSACTION_NOT_PERMITTED', { mcc: '5999', mid: 'MID-BOTH' })
})

t.test('AMOUNT_LIMIT_EXCEEDED per transaction and per DAY window', async (t) => {
  const ch = await cardholder(db, { fundMinor: 100_000 })
  await velocityControl(db, { user: ch.user, window: 'TRANSACTION', amountLimitMinor: 5000 })
  await invalidate(app, { controls: [ch.user] })
  t.match((await expectDecline(t, ch, 'AMOUNT_LIMIT_EXCEEDED', { amount: '50.01' })).memo, /per-transaction/)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: '50.00' }))).statusCode, 200, 'the cap itself passes')

  const day = await cardholder(db, { fundMinor: 100_000 })
  await velocityControl(db, { user: day.user, window: 'DAY', amountLimitMinor: 10_000 })
  await invalidate(app, { controls: [day.user] })
  const now = new Date()
  await pastSpend(db, { user: day.user, card: day.card, amountMinor: 9000, createdAt: windowStart({ velocity_window: 'DAY', created_time: '' }, now)! })
  await pastSpend(db, { user: day.user, card: day.card, amountMinor: 50_000, createdAt: new Date(windowStart({ velocity_window: 'DAY', created_time: '' }, now)!.getTime() - 1000) })
  await expectDecline(t, day, 'AMOUNT_LIMIT_EXCEEDED', { amount: '10.01' })
  t.equal((await postJit(app, jitRequest({ user: day.user, card: day.card, amount: '10.00' }))).statusCode, 200, 'yesterday does not count; today 90.00 + 10.00 = the limit')
  await expectDecline(t, day, 'AMOUNT_LIMIT_EXCEEDED', { amount: '0.01' })
})

t.test('TRANSACTION_COUNT_LIMIT_EXCEEDED, and an incremental is not a new use', async (t) => {
  const ch = await cardholder(db, { fundMinor: 100_000 })
  await velocityControl(db, { user: ch.user, window: 'DAY', usageLimit: 2 })
  await invalidate(app, { controls: [ch.user] })
  const first = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  t.equal((await postJit(app, first)).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }))).statusCode, 200)
  const before = await account(db, ch.user)
  const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }))
  t.equal(res.statusCode, 402)
  t.equal(res.json().jit_funding.decline_reason, 'TRANSACTION_COUNT_LIMIT_EXCEEDED')
  t.same(await account(db, ch.user), before)
  const incremental = jitRequest({ user: ch.user, card: ch.card, amount: 2, method: 'pgfs.authorization.incremental', original: first.gpa_order.jit_funding.token })
  t.equal((await postJit(app, incremental)).statusCode, 200, 'an incremental adds to the amount, not to the count')
  t.match(await account(db, ch.user), { debits_pending: 400 })
})

t.test('INSUFFICIENT_FUNDS, and a new account with no money', async (t) => {
  const ch = await cardholder(db, { fundMinor: 1000 })
  await expectDecline(t, ch, 'INSUFFICIENT_FUNDS', { amount: '10.01' })
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: '10.00' }))).statusCode, 200, 'exactly the available amount passes')
  await expectDecline(t, ch, 'INSUFFICIENT_FUNDS', { amount: '0.01' })
  await expectDecline(t, await cardholder(db), 'INSUFFICIENT_FUNDS', { amount: 1 })
  await expectDecline(t, await cardholder(db, { fundMinor: 100_000 }), 'INSUFFICIENT_FUNDS', { amount: 1, method: 'pgfs.auth_plus_capture', currency: 'EUR' })
})

t.test('the decision order of DESIGN §4', async (t) => {
  // card state before cardholder state before amount before controls before funds
  await expectDecline(t, await cardholder(db, { cardState: 'SUSPENDED', status: 'SUSPENDED' }), 'CARD_NOT_ACTIVE', { amount: '12.345' })
  await expectDecline(t, await cardholder(db, { cardState: 'SUSPENDED' }), 'CARD_NOT_ACTIVE', { amount: 'abc' })
  await expectDecline(t, await cardholder(db, { status: 'CLOSED' }), 'CLOSED_ACCOUNT', { amount: -1 })

  const ch = await cardholder(db)
  await authControl(db, { user: ch.user, mcc: '7995' })
  await velocityControl(db, { user: ch.user, window: 'TRANSACTION', amountLimitMinor: 100 })
  await velocityControl(db, { user: ch.user, window: 'DAY', usageLimit: 0 })
  await invalidate(app, { controls: [ch.user] })
  await expectDecline(t, ch, 'INVALID_AMOUNT', { amount: '0', mcc: '7995' })
  await expectDecline(t, ch, 'TRANSACTION_NOT_PERMITTED', { amount: 50, mcc: '7995' })
  await expectDecline(t, ch, 'AMOUNT_LIMIT_EXCEEDED', { amount: 50 })
  await expectDecline(t, ch, 'TRANSACTION_COUNT_LIMIT_EXCEEDED', { amount: 1 })

  // amount windows before usage windows, whatever order the controls come in
  const w = await cardholder(db, { fundMinor: 100_000 })
  await velocityControl(db, { user: w.user, window: 'WEEK', usageLimit: 0 })
  await velocityControl(db, { user: w.user, window: 'MONTH', amountLimitMinor: 500 })
  await invalidate(app, { controls: [w.user] })
  await expectDecline(t, w, 'AMOUNT_LIMIT_EXCEEDED', { amount: 6 })
  await expectDecline(t, w, 'TRANSACTION_COUNT_LIMIT_EXCEEDED', { amount: 5 })
})

t.test('a velocity control counts only its currency and its merchant scope', async (t) => {
  const ch = await cardholder(db, { fundMinor: 100_000 })
  await velocityControl(db, { user: ch.user, window: 'DAY', amountLimitMinor: 1000, mcc: '5812' })
  await velocityControl(db, { user: ch.user, window: 'DAY', amountLimitMinor: 1, currency: 'EUR' })
  await invalidate(app, { controls: [ch.user] })
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 50, mcc: '5411' }))).statusCode, 200, 'another MCC is not limited')
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 10, mcc: '5812' }))).statusCode, 200)
  await expectDecline(t, ch, 'AMOUNT_LIMIT_EXCEEDED', { amount: 0.01, mcc: '5812' })
})
