import t from 'tap'
import { build, jitHeaders, uniq } from '../../helper.js'
import { developmentSecrets } from '../../../src/config.js'
import { account, cardholder, decisionOf, holdCount, jitRequest, postJit } from '../../jit-fixtures.js'

const app = await build(t)
const db = app.db
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('wrong or missing credentials: 401 and nothing recorded', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const wrong: Array<Record<string, string>> = [
    {},
    { authorization: basic(developmentSecrets.JIT_BASIC_AUTH_USER, 'not-the-password-at-all') },
    { authorization: basic('someone-else', developmentSecrets.JIT_BASIC_AUTH_PASSWORD) },
    { authorization: basic(developmentSecrets.WEBHOOK_BASIC_AUTH_USER, developmentSecrets.WEBHOOK_BASIC_AUTH_PASSWORD) },
    { authorization: `Bearer ${developmentSecrets.ADMIN_TOKEN}` },
    { authorization: 'Basic !!!' },
    { authorization: `Basic ${Buffer.from(developmentSecrets.JIT_BASIC_AUTH_USER).toString('base64')}` }
  ]
  for (const headers of wrong) {
    const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
    const res = await postJit(app, body, headers)
    t.equal(res.statusCode, 401, JSON.stringify(headers))
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized' })
    t.match(res.headers['www-authenticate'], /^Basic/)
    t.equal(await decisionOf(db, body.gpa_order.jit_funding.token), undefined, 'no decision row')
  }
  // Checked before the body is read: a malformed body without credentials is a 401 too.
  const res = await app.inject({ method: 'POST', url: '/marqeta/jit', headers: { 'content-type': 'application/json' }, payload: '{oops' })
  t.equal(res.statusCode, 401)
  t.equal(await holdCount(db, ch.user), 0)
  t.match(await account(db, ch.user), { available: 10_000 })
})

t.test('malformed JSON is a 400, never a 500', async (t) => {
  for (const payload of ['{oops', '', '[1,2', '{"gpa_order": {"jit_funding": ']) {
    const res = await app.inject({ method: 'POST', url: '/marqeta/jit', headers: { ...jitHeaders, 'content-type': 'application/json' }, payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.json(), { statusCode: 400, error: 'Bad Request', message: String })
  }
})

t.test('a message without jit_funding, or with a broken one, is a 400 naming the field', async (t) => {
  const ch = await cardholder(db)
  const base = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  const bodies: Array<[unknown, RegExp]> = [
    [{ ...base, gpa_order: undefined }, /jit_funding/],
    [{ ...base, gpa_order: { token: 'x' } }, /jit_funding/],
    [{ ...base, gpa_order: { jit_funding: { ...base.gpa_order.jit_funding, token: undefined } } }, /token/],
    [{ ...base, gpa_order: { jit_funding: { ...base.gpa_order.jit_funding, method: undefined } } }, /method/],
    [{ ...base, gpa_order: { jit_funding: { ...base.gpa_order.jit_funding, user_token: undefined } } }, /user_token/],
    [{ ...base, gpa_order: { jit_funding: 'nope' } }, /jit_funding/],
    [[base], /object/],
    ['"a string"', /object/],
    ['null', /object/],
    ['42', /object/]
  ]
  for (const [body, message] of bodies) {
    const res = typeof body === 'string'
      ? await app.inject({ method: 'POST', url: '/marqeta/jit', headers: { ...jitHeaders, 'content-type': 'application/json' }, payload: body })
      : await postJit(app, body)
    t.equal(res.statusCode, 400, res.body)
    t.match(res.json().message, message)
  }
  t.equal(await holdCount(db, ch.user), 0)
})

t.test('unknown fields anywhere are accepted and ignored', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: '3.00' })
  body.brand_new_field = { nested: [1, 2, { deep: true }] }
  body.card_acceptor.poi = { terminal: 'T1', partial_approval_capable: null }
  body.pos.terminal_attendance = 'ATTENDED'
  body.gpa_order.funding = { amount: 3, source: { type: 'programgateway' }, gateway_log: { order_number: 'x', timed_out: false, extra: 1 }, extra: 'x' }
  body.gpa_order.jit_funding.future_field = { anything: ['goes'] }
  body.gpa_order.jit_funding.address_verification = { request: { zip: '94612' } }
  body.gpa_order.unknown_token = 'abc'
  body.fraud = { network: { transaction_risk_score: 12 } }
  body.currency_conversion = { network: { original_amount: 3, conversion_rate: 1 } }
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.same(Object.keys(res.json()), ['jit_funding'])
  t.notOk('future_field' in res.json().jit_funding, 'unknown fields are not echoed')
  t.match(await account(db, ch.user), { debits_pending: 300 })
})

t.test('jit_funding under gpa_order_unload is read too', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 2 })
  body.gpa_order_unload = body.gpa_order
  delete body.gpa_order
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.match(await account(db, ch.user), { debits_pending: 200 })
})

t.test('an unknown method: 200 echo, recorded, no ledger change, counted', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const method = `pgfs.brand.new.${uniq('m')}`
  const body = jitRequest({ user: ch.user, card: ch.card, amount: '5.00', method })
  const countedBefore = (await app.telemetry.jitUnknownMethods.get()).values.find((v) => v.labels.method === 'other')?.value ?? 0
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.match(res.json().jit_funding, { token: body.gpa_order.jit_funding.token, method, user_token: ch.user, amount: 5 })
  t.notOk(res.json().jit_funding.decline_reason)
  t.match(await decisionOf(db, body.gpa_order.jit_funding.token), { result: 'recorded', status_code: 200 })
  t.same(await account(db, ch.user), { credits_posted: 10_000, debits_posted: 0, debits_pending: 0, available: 10_000 })
  // Counted under `other`: a label value per request-supplied method would be unbounded.
  const metric = await app.telemetry.jitUnknownMethods.get()
  t.equal(metric.values.find((v) => v.labels.method === 'other')?.value, countedBefore + 1)
  t.notOk(metric.values.some((v) => v.labels.method === method))
  // Even with an unknown user, no card and a nonsense amount.
  const odd = jitRequest({ user: uniq('nobody'), amount: 'abc', method })
  const res2 = await postJit(app, odd)
  t.equal(res2.statusCode, 200, res2.body)
})

t.test('record-only methods: 200, recorded, no ledger change', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  for (const method of ['pgfs.authorization.advice', 'pgfs.refund.authorization', 'pgfs.original.credit.authorization.reversal']) {
    const body = jitRequest({ user: ch.user, card: ch.card, amount: '5.00', method })
    const res = await postJit(app, body)
    t.equal(res.statusCode, 200, res.body)
    t.match(await decisionOf(db, body.gpa_order.jit_funding.token), { result: 'recorded' })
  }
  t.same(await account(db, ch.user), { credits_posted: 10_000, debits_posted: 0, debits_pending: 0, available: 10_000 })
})

t.test('under event-loop pressure the gateway still decides (a 503 would hand the decision to stand-in)', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  // Block the event loop for over a second at a time, yielding only through setImmediate so that every delay sample
  // under-pressure takes is a long one, until its mean event-loop delay passes maxEventLoopDelay (1000 ms).
  const giveUp = Date.now() + 8000
  while (!app.isUnderPressure() && Date.now() < giveUp) {
    const until = Date.now() + 1100
    while (Date.now() < until) { /* busy */ }
    await new Promise((resolve) => setImmediate(resolve))
  }
  t.ok(app.isUnderPressure(), 'the process is under pressure')
  const [res, metrics] = await Promise.all([postJit(app, body), app.inject({ method: 'GET', url: '/metrics' })])
  t.equal(metrics.statusCode, 503, 'other routes are shed')
  t.equal(res.statusCode, 200, res.body)
})

t.test('a NUL character anywhere (PostgreSQL text cannot hold it) is never a 500', async (t) => {
  const ch = await cardholder(db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  body.card_acceptor.name = 'Corner\u0000Grocery'
  body.unknown = { 'k\u0000': ['\u0000'] }
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.token, body.gpa_order.jit_funding.token)
  t.match(await account(db, ch.user), { debits_pending: 100 })

  const badCard = await postJit(app, jitRequest({ user: ch.user, card: `${ch.card}\u0000`, amount: 1 }))
  t.equal(badCard.statusCode, 402, badCard.body)
  t.equal(badCard.json().jit_funding.decline_reason, 'INVALID_CARD')

  const badToken = jitRequest({ user: ch.user, card: ch.card, amount: 1, token: `${uniq('jit')}\u0000` })
  const res2 = await postJit(app, badToken)
  t.equal(res2.statusCode, 200, res2.body)
  t.equal((await postJit(app, badToken)).body, res2.body, 'and its replay is the same answer')
  t.match(await account(db, ch.user), { debits_pending: 200 })
})
