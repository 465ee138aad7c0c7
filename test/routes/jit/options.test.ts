import t from 'tap'
import { build, jitHeaders } from '../../helper.js'
import { account, cardholder, decisionOf, holdOf, jitRequest, postJit } from '../../jit-fixtures.js'

// Behaviour switched by configuration: JIT_CUSTOM_HEADER_NAME/VALUE and JIT_PARTIAL_APPROVAL.

t.test('the custom header is required when JIT_CUSTOM_HEADER_NAME/VALUE are set', async (t) => {
  const app = await build(t, { JIT_CUSTOM_HEADER_NAME: 'X-Program-Key', JIT_CUSTOM_HEADER_VALUE: 'program-key-123' })
  const ch = await cardholder(app.db, { fundMinor: 1000 })
  const wrong: Array<Record<string, string>> = [{}, { 'x-program-key': 'wrong' }, { 'x-program-key': 'program-key-1234' }, { 'x-other': 'program-key-123' }]
  for (const extra of wrong) {
    const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
    const res = await postJit(app, body, { ...jitHeaders, ...extra })
    t.equal(res.statusCode, 401, JSON.stringify(extra))
    t.equal(await decisionOf(app.db, body.gpa_order.jit_funding.token), undefined, 'nothing recorded')
  }
  const noBasic = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }), { 'X-Program-Key': 'program-key-123' })
  t.equal(noBasic.statusCode, 401, 'the header does not replace Basic auth')
  const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }), { ...jitHeaders, 'X-PROGRAM-KEY': 'program-key-123' })
  t.equal(res.statusCode, 200, res.body)
  t.match(await account(app.db, ch.user), { available: 900 })
})

t.test('partial approval is off by default, even for a partial-capable terminal', async (t) => {
  const app = await build(t)
  const ch = await cardholder(app.db, { fundMinor: 1000 })
  const res = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 25, partialCapable: true }))
  t.equal(res.statusCode, 402)
  t.equal(res.json().jit_funding.decline_reason, 'INSUFFICIENT_FUNDS')
  t.equal(res.json().jit_funding.amount, 25, 'a decline echoes the requested amount')
  t.match(await account(app.db, ch.user), { available: 1000 })
})

t.test('with JIT_PARTIAL_APPROVAL=true a partial-capable terminal gets what is available', async (t) => {
  const app = await build(t, { JIT_PARTIAL_APPROVAL: 'true' })
  const ch = await cardholder(app.db, { fundMinor: 1000 })

  const notCapable = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 25, partialCapable: false }))
  t.equal(notCapable.statusCode, 402)
  t.equal(notCapable.json().jit_funding.decline_reason, 'INSUFFICIENT_FUNDS')

  const enough = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 4, partialCapable: true }))
  t.equal(enough.json().jit_funding.amount, 4, 'enough money: the full amount')

  const body = jitRequest({ user: ch.user, card: ch.card, amount: 25, partialCapable: true })
  const partial = await postJit(app, body)
  t.equal(partial.statusCode, 200, partial.body)
  t.equal(partial.json().jit_funding.amount, 6, 'the approved amount is what was left')
  t.match(await holdOf(app.db, body.gpa_order.jit_funding.token), { amount: 600 })
  t.same(await account(app.db, ch.user), { credits_posted: 1000, debits_posted: 0, debits_pending: 1000, available: 0 })
  const { rows } = await app.db.query('SELECT amount_minor::int AS a FROM decisions WHERE jit_token = $1', [body.gpa_order.jit_funding.token])
  t.equal(rows[0].a, 600)

  const nothing = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, partialCapable: true }))
  t.equal(nothing.statusCode, 402, 'nothing left: a decline, not an approval of 0')
  t.equal(nothing.json().jit_funding.decline_reason, 'INSUFFICIENT_FUNDS')

  const debitor = await cardholder(app.db, { fundMinor: 725 })
  const capture = await postJit(app, jitRequest({ user: debitor.user, card: debitor.card, amount: '10.00', method: 'pgfs.auth_plus_capture', partialCapable: true }))
  t.equal(capture.json().jit_funding.amount, 7.25)
  t.same(await account(app.db, debitor.user), { credits_posted: 725, debits_posted: 725, debits_pending: 0, available: 0 })
})
