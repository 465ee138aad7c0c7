import t from 'tap'
import { build } from '../../helper.js'
import { auditLedger } from '../../../src/audit.js'
import { Tokens, account, cardholder, decisionOf, fund, holdOf, loadFixture, postJit } from '../../jit-fixtures.js'

// The worked scenario of test/fixtures/marqeta/README.md, message by message, with exact balances.
t.test('the fixtures give the worked scenario its exact balances', async (t) => {
  const app = await build(t)
  const db = app.db
  const tokens = new Tokens()
  const user = tokens.of('user-ada')
  const card = tokens.of('card-ada-1')
  await cardholder(db, { user, card })
  await fund(db, user, 10_000)

  const auth = loadFixture('jit-authorization.json', tokens)
  let res = await postJit(app, auth)
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json(), { jit_funding: { token: tokens.of('jit-0001'), method: 'pgfs.authorization', user_token: user, acting_user_token: user, amount: 42.17 } })
  t.match(await holdOf(db, tokens.of('jit-0001')), { amount: 4217, remaining: 4217, status: 'PENDING' })

  const incremental = loadFixture('jit-authorization-incremental.json', tokens)
  res = await postJit(app, incremental)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.amount, 10)
  t.match(await holdOf(db, tokens.of('jit-0001')), { amount: 5217, remaining: 5217, status: 'PENDING' }, 'the incremental adds to the original hold')
  t.match(await holdOf(db, tokens.of('jit-0002')), { amount: 5217 }, 'and points at it')
  t.match(await account(db, user), { debits_pending: 5217, available: 4783 })

  res = await postJit(app, loadFixture('jit-balance-inquiry.json', tokens))
  t.equal(res.statusCode, 200, res.body)
  t.same(res.json().jit_funding.balances, { USD: { currency_code: 'USD', available_balance: 47.83, ledger_balance: 100 } })
  t.match(await account(db, user), { debits_pending: 5217, available: 4783 }, 'an inquiry changes nothing')

  const capture = loadFixture('jit-auth-plus-capture.json', tokens)
  res = await postJit(app, capture)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.amount, 7.25)
  t.same(await account(db, user), { credits_posted: 10_000, debits_posted: 725, debits_pending: 5217, available: 4058 })

  // The clearing is informative (a webhook); reaching the gateway it has its webhook's effect.
  const clearing = loadFixture('webhook-clearing.json', tokens).transactions[0]
  res = await postJit(app, clearing)
  const cleared = res
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.token, tokens.of('jit-0005'))
  t.same(await account(db, user), { credits_posted: 10_000, debits_posted: 5742, debits_pending: 0, available: 4258 })
  t.match(await holdOf(db, tokens.of('jit-0001')), { amount: 5217, remaining: 0, posted: 5017, status: 'POSTED' })
  t.match(await decisionOf(db, tokens.of('jit-0005')), { result: 'recorded', status_code: 200 })

  const inquiry = { ...loadFixture('jit-balance-inquiry.json', tokens) }
  inquiry.gpa_order.jit_funding.token = `${tokens.of('jit-0003')}-2`.slice(0, 36)
  res = await postJit(app, inquiry)
  t.same(res.json().jit_funding.balances, { USD: { currency_code: 'USD', available_balance: 42.58, ledger_balance: 42.58 } })

  // The same clearing again at the gateway is a replay: the first answer, nothing moves.
  res = await postJit(app, clearing)
  t.equal(res.statusCode, 200)
  t.equal(res.body, cleared.body)
  t.same(await account(db, user), { credits_posted: 10_000, debits_posted: 5742, debits_pending: 0, available: 4258 })
  const { rows } = await db.query(`SELECT count(*)::int AS n FROM transfers WHERE id LIKE $1 AND kind = 'post'`, [`${tokens.of('jit-0005')}:post%`])
  t.equal(rows[0].n, 1, 'one post transfer (the hold released, the clearing posted), under the effect key the webhook path shares')
  // Its webhook arriving afterwards applies the same effect key: a duplicate, no money moves.
  const webhook = await db.query('SELECT ledger_apply($1::jsonb) AS r', [{
    kind: 'settle', effect_key: `${tokens.of('jit-0005')}:post`, forced: true, user_token: user, currency_code: 'USD',
    amount_minor: 5017, jit_token: tokens.of('jit-0005'), hold_tokens: [tokens.of('jit-0001'), tokens.of('jit-0002')]
  }])
  t.equal(webhook.rows[0].r.status, 'duplicate')
  t.same(await account(db, user), { credits_posted: 10_000, debits_posted: 5742, debits_pending: 0, available: 4258 })
  t.same((await auditLedger(db, { userTokens: [user] })).violations, [], 'the ledger invariants hold for this user')
})

t.test('the same balance inquiry for an unknown card is declined INVALID_CARD', async (t) => {
  const app = await build(t)
  const tokens = new Tokens()
  await cardholder(app.db, { user: tokens.of('user-ada'), fundMinor: 100 })
  const res = await postJit(app, loadFixture('jit-balance-inquiry.json', tokens))
  t.equal(res.statusCode, 402)
  t.equal(res.json().jit_funding.decline_reason, 'INVALID_CARD')
  t.notOk(res.json().jit_funding.balances)
})
