import t from 'tap'
import { adminHeaders, build, uniq } from '../../helper.js'
import { adminCall } from './helper.js'
import { applyLedger } from '../../../src/ledger/apply.js'

t.test('users', async (t) => {
  const app = await build(t)
  const call = async (method: 'GET' | 'POST' | 'PATCH', url: string, payload?: unknown, headers: Record<string, string> = adminHeaders) =>
    await adminCall(app, method, url, payload, headers)

  await t.test('every /v1 route needs the admin bearer token', async (t) => {
    for (const headers of [{}, { authorization: 'Bearer wrong-token-wrong-token' }, { authorization: 'Basic abc' }] as Array<Record<string, string>>) {
      const res = await call('GET', `/v1/users/${uniq('u')}`, undefined, headers)
      t.equal(res.statusCode, 401)
      t.same(res.json(), { statusCode: 401, error: 'Unauthorized', message: 'a valid bearer token is required' })
    }
    const res = await call('POST', '/v1/users', { token: 'x'.repeat(99) }, {})
    t.equal(res.statusCode, 401, 'authentication comes before validation')
    const routes: Array<['GET' | 'POST' | 'PATCH' | 'DELETE', string]> = [
      ['POST', '/v1/users'], ['GET', '/v1/users/u1'], ['PATCH', '/v1/users/u1'], ['POST', '/v1/users/u1/loads'],
      ['POST', '/v1/users/u1/unloads'], ['GET', '/v1/users/u1/balances'], ['POST', '/v1/cards'], ['GET', '/v1/cards/c1'],
      ['PATCH', '/v1/cards/c1'], ['POST', '/v1/velocitycontrols'], ['GET', '/v1/velocitycontrols'], ['DELETE', '/v1/velocitycontrols/v1'],
      ['POST', '/v1/authcontrols'], ['GET', '/v1/authcontrols'], ['DELETE', '/v1/authcontrols/a1'], ['GET', '/v1/transactions'],
      ['GET', '/v1/transactions/j1']
    ]
    for (const [method, url] of routes) {
      const r = await adminCall(app, method, url, method === 'GET' || method === 'DELETE' ? undefined : {}, {})
      t.equal(r.statusCode, 401, `${method} ${url}`)
    }
  })

  await t.test('POST creates an ACTIVE user with the client token, or a generated one', async (t) => {
    const token = uniq('usr')
    const res = await call('POST', '/v1/users', { token, first_name: 'Ada', last_name: 'Lovelace', metadata: { tier: 'gold' } })
    t.equal(res.statusCode, 201)
    const body = res.json()
    t.match(body, { token, status: 'ACTIVE', first_name: 'Ada', last_name: 'Lovelace', metadata: { tier: 'gold' } })
    t.ok(!Number.isNaN(Date.parse(body.created_time)))
    t.same((await call('GET', `/v1/users/${token}`)).json(), body, 'GET answers the same user')

    const generated = await call('POST', '/v1/users', {})
    t.equal(generated.statusCode, 201)
    t.match(generated.json().token, /^[A-Za-z0-9_-]{36}$/)
    t.same(generated.json().metadata, {})
    t.notOk('first_name' in generated.json(), 'absent fields are omitted')

    const max = uniq('u').padEnd(36, 'x')
    t.equal((await call('POST', '/v1/users', { token: max })).statusCode, 201, '36 characters is allowed')
  })

  await t.test('a duplicate token is a 409', async (t) => {
    const token = uniq('usr')
    t.equal((await call('POST', '/v1/users', { token })).statusCode, 201)
    const res = await call('POST', '/v1/users', { token })
    t.equal(res.statusCode, 409)
    t.match(res.json(), { statusCode: 409, error: 'Conflict', message: /already exists/, code: 'DUPLICATE_TOKEN' })
  })

  await t.test('invalid input is a 400 naming the field', async (t) => {
    const cases: Array<[unknown, RegExp]> = [
      [{ token: 'x'.repeat(37) }, /body\/token/],
      [{ token: 'bad token!' }, /body\/token/],
      [{ token: '' }, /body\/token/],
      [{ metadata: 'nope' }, /body\/metadata/],
      [{ first_name: 'x'.repeat(300) }, /body\/first_name/]
    ]
    for (const [payload, message] of cases) {
      const res = await call('POST', '/v1/users', payload)
      t.equal(res.statusCode, 400, JSON.stringify(payload))
      t.match(res.json(), { statusCode: 400, error: 'Bad Request', message })
    }
    const malformed = await app.inject({ method: 'POST', url: '/v1/users', payload: '{"token": ', headers: { ...adminHeaders, 'content-type': 'application/json' } })
    t.equal(malformed.statusCode, 400, 'malformed JSON')
    t.notMatch(malformed.body, /at .*\.ts/, 'never a stack trace')
  })

  await t.test('GET of an unknown user is a 404', async (t) => {
    const res = await call('GET', `/v1/users/${uniq('nobody')}`)
    t.equal(res.statusCode, 404)
    t.match(res.json(), { statusCode: 404, error: 'Not Found', code: 'NOT_FOUND' })
  })

  await t.test('PATCH moves between ACTIVE and SUSPENDED; CLOSED is final', async (t) => {
    const token = uniq('usr')
    await call('POST', '/v1/users', { token })
    const suspended = await call('PATCH', `/v1/users/${token}`, { status: 'SUSPENDED' })
    t.equal(suspended.statusCode, 200)
    t.equal(suspended.json().status, 'SUSPENDED')
    t.equal((await call('PATCH', `/v1/users/${token}`, { status: 'ACTIVE' })).json().status, 'ACTIVE')
    t.equal((await call('PATCH', `/v1/users/${token}`, { status: 'CLOSED' })).json().status, 'CLOSED')
    t.equal((await call('PATCH', `/v1/users/${token}`, { status: 'CLOSED' })).statusCode, 200, 'closing again changes nothing')
    for (const status of ['ACTIVE', 'SUSPENDED']) {
      const res = await call('PATCH', `/v1/users/${token}`, { status })
      t.equal(res.statusCode, 409, `CLOSED → ${status}`)
      t.match(res.json(), { statusCode: 409, error: 'Conflict', code: 'INVALID_TRANSITION' })
    }
    t.equal((await call('GET', `/v1/users/${token}`)).json().status, 'CLOSED')
    t.match((await call('PATCH', `/v1/users/${token}`, { status: 'DELETED' })).json(), { statusCode: 400, message: /body\/status/ })
    t.match((await call('PATCH', `/v1/users/${token}`, {})).json(), { statusCode: 400, message: /status/ })
    t.equal((await call('PATCH', `/v1/users/${uniq('nobody')}`, { status: 'ACTIVE' })).statusCode, 404)
  })

  await t.test('balances: one entry per currency account, as decimal strings', async (t) => {
    const token = uniq('usr')
    await call('POST', '/v1/users', { token })
    t.same((await call('GET', `/v1/users/${token}/balances`)).json(), {}, 'no account yet')
    const load = async (amount: string, currency: string) =>
      await call('POST', `/v1/users/${token}/loads`, { amount, currency_code: currency }, { ...adminHeaders, 'idempotency-key': uniq('k') })
    t.equal((await load('25', 'USD')).statusCode, 201)
    t.equal((await load('1000', 'JPY')).statusCode, 201)
    const card = uniq('card')
    await call('POST', '/v1/cards', { token: card, user_token: token })
    const jit = uniq('jit')
    await applyLedger(app.db, { kind: 'hold', effect_key: `${jit}:hold`, jit_token: jit, user_token: token, card_token: card, currency_code: 'USD', amount_minor: 7_25n })
    const res = await call('GET', `/v1/users/${token}/balances`)
    t.equal(res.statusCode, 200)
    t.same(res.json(), {
      JPY: { currency_code: 'JPY', available_balance: '1000', ledger_balance: '1000', pending_holds: '0' },
      USD: { currency_code: 'USD', available_balance: '17.75', ledger_balance: '25.00', pending_holds: '7.25' }
    })
    t.equal((await call('GET', `/v1/users/${uniq('nobody')}/balances`)).statusCode, 404)
  })
})
