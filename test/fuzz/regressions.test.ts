import t from 'tap'
import { adminHeaders, build, jitHeaders, uniq, webhookHeaders } from '../helper.js'
import { buildConnected } from '../src/webhooks-helpers.js'
import { account, cardholder, jitRequest, postJit } from '../jit-fixtures.js'
import { jsonDeeperThan, MAX_JSON_DEPTH } from '../../src/json-depth.js'

// The 500s a hostile-input probe found, each answered now with a 400 that names the problem.

const nest = (depth: number, leaf: unknown = 0): unknown => {
  let value = leaf
  for (let i = 0; i < depth; i++) value = i % 2 === 0 ? { a: value } : [value]
  return value
}

/** The JSON text of nest(depth), written without JSON.stringify (which recurses). */
const nestText = (depth: number): string => {
  let text = '0'
  for (let i = 0; i < depth; i++) text = i % 2 === 0 ? `{"a":${text}}` : `[${text}]`
  return text
}

t.test('the depth check is iterative and exact', async (t) => {
  t.equal(jsonDeeperThan(nest(100_000)), true, 'a 100 000-level value is checked without recursion')
  t.equal(jsonDeeperThan(nest(MAX_JSON_DEPTH)), false, `${MAX_JSON_DEPTH} levels are allowed`)
  t.equal(jsonDeeperThan(nest(MAX_JSON_DEPTH + 1)), true, `${MAX_JSON_DEPTH + 1} are not`)
  t.equal(jsonDeeperThan({ a: [1, 'x', null], b: { c: {} } }, 3), false)
  t.equal(jsonDeeperThan({ a: [1, 'x', null], b: { c: { d: {} } } }, 3), true)
  t.equal(jsonDeeperThan('text'), false)
})

t.test('webhooks: a body nested 5000 levels deep is a 400 naming the problem; a deep but allowed one is still a 200', async (t) => {
  const app = await buildConnected(t, { ROLE: 'api' })
  const post = async (body: string) => await app.inject({
    method: 'POST', url: '/marqeta/webhooks', headers: { ...webhookHeaders, 'content-type': 'application/json' }, payload: body
  })
  const deep = `{"transactions":[${nestText(5000)}]}`
  const res = await post(deep)
  t.equal(res.statusCode, 400)
  t.same(res.json(), { statusCode: 400, error: 'Bad Request', message: `body nests deeper than ${MAX_JSON_DEPTH} levels`, code: 'BODY_TOO_DEEP' })
  const unknownKey = await post(`{"somethingnew":${nestText(5000)}}`)
  t.equal(unknownKey.statusCode, 400, 'under an unknown key too')

  // A ping (processed as a no-op) nested to exactly the limit: body object, pings array, item, then the payload.
  const ping = { pings: [{ token: uniq('deep-ping'), payload: nest(MAX_JSON_DEPTH - 3) }] }
  t.equal(jsonDeeperThan(ping), false)
  const ok = await post(JSON.stringify(ping))
  t.equal(ok.statusCode, 200, ok.body)
  t.same(ok.json(), { queued: 1 })
})

t.test('JIT and admin bodies nested too deep are a 400 too', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const jit = await app.inject({
    method: 'POST', url: '/marqeta/jit', headers: { ...jitHeaders, 'content-type': 'application/json' },
    payload: `{"extension":${nestText(5000)},"gpa_order":{"jit_funding":{"token":"${uniq('deep')}","method":"pgfs.authorization","user_token":"${uniq('u')}","amount":1}}}`
  })
  t.equal(jit.statusCode, 400)
  t.match(jit.json(), { statusCode: 400, code: 'BODY_TOO_DEEP' })
  const user = await app.inject({ method: 'POST', url: '/v1/users', headers: { ...adminHeaders, 'content-type': 'application/json' }, payload: `{"metadata":${nestText(5000)}}` })
  t.equal(user.statusCode, 400)
  t.match(user.json(), { statusCode: 400, code: 'BODY_TOO_DEEP' })
})

t.test('admin API: NUL and other malformed tokens, NUL in text, non-finite integers: 400 naming the field', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const call = async (method: string, url: string, payload?: unknown, headers: Record<string, string> = {}) =>
    await app.inject({ method: method as 'GET', url, headers: { ...adminHeaders, ...headers }, ...(payload === undefined ? {} : { payload: payload as object }) })
  const user = uniq('rg-user')
  t.equal((await call('POST', '/v1/users', { token: user })).statusCode, 201)

  const cases: Array<[string, string, unknown, RegExp, Record<string, string>?]> = [
    ['GET', '/v1/transactions/%00', undefined, /^params\/jit_token /],
    ['GET', '/v1/transactions/a%00b', undefined, /^params\/jit_token /],
    ['GET', `/v1/transactions/${'x'.repeat(65)}`, undefined, /^params\/jit_token /],
    ['GET', '/v1/users/%00/balances', undefined, /^params\/token /],
    ['GET', '/v1/users/%00', undefined, /^params\/token /],
    ['GET', '/v1/users/%F0%9F%98%80', undefined, /^params\/token /],
    ['GET', `/v1/users/${'a'.repeat(37)}`, undefined, /^params\/token /],
    ['PATCH', '/v1/users/%00', { status: 'ACTIVE' }, /^params\/token /],
    ['POST', '/v1/users/%00/loads', { amount: 1, currency_code: 'USD' }, /^params\/token /, { 'idempotency-key': uniq('k') }],
    ['GET', '/v1/cards/%00', undefined, /^params\/token /],
    ['PATCH', '/v1/cards/%E2%80%AE', { state: 'ACTIVE' }, /^params\/token /],
    ['DELETE', '/v1/velocitycontrols/%00', undefined, /^params\/token /],
    ['DELETE', '/v1/authcontrols/%00', undefined, /^params\/token /],
    ['GET', '/v1/transactions?limit=Infinity', undefined, /^querystring\/limit /],
    ['GET', '/v1/transactions?limit=-Infinity', undefined, /^querystring\/limit /],
    ['GET', '/v1/transactions?user_token=%00', undefined, /^querystring\/user_token /],
    ['GET', '/v1/velocitycontrols?user_token=%00', undefined, /^querystring\/user_token /],
    ['GET', '/v1/authcontrols?card_token=%00', undefined, /^querystring\/card_token /],
    ['POST', '/v1/users', { first_name: 'A\u0000' }, /^body\/first_name /],
    ['POST', '/v1/users', { metadata: { k: 'v\u0000' } }, /^body\/metadata\/k /],
    ['POST', '/v1/users', { metadata: { 'k\u0000': 'v' } }, /^body\/metadata /],
    ['POST', '/v1/users', { metadata: { k: 'x\uD800' } }, /^body\/metadata\/k /],
    ['POST', '/v1/users', { metadata: { '\uDC00': 'v' } }, /^body\/metadata /],
    ['POST', '/v1/users', { last_name: '\uDBFF' }, /^body\/last_name /],
    ['POST', '/v1/cards', { user_token: '\u0000' }, /^body\/user_token /],
    ['POST', '/v1/velocitycontrols', { association: { user_token: 'u\u0000' }, currency_code: 'USD', velocity_window: 'DAY', usage_limit: 1 }, /^body\/association\/user_token /],
    ['POST', '/v1/velocitycontrols', { association: { user_token: user }, currency_code: 'USD', velocity_window: 'DAY', usage_limit: 'Infinity' }, /^body\/usage_limit /],
    ['POST', '/v1/velocitycontrols', { name: '\u0000', association: { user_token: user }, currency_code: 'USD', velocity_window: 'DAY', usage_limit: 1 }, /^body\/name /],
    ['POST', '/v1/authcontrols', { association: { user_token: user }, merchant_scope: { mid: 'm\u0000' } }, /^body\/merchant_scope\/mid /]
  ]
  for (const [method, url, body, field, headers] of cases) {
    const res = await call(method, url, body, headers)
    t.equal(res.statusCode, 400, `${method} ${url} ${JSON.stringify(body) ?? ''}: ${res.body}`)
    const json = res.json()
    t.same(Object.keys(json).sort(), ['code', 'error', 'message', 'statusCode'], 'the one error shape')
    t.match(json.message, field, `names the field: ${json.message}`)
  }

  // Still served: well-formed Unicode (an emoji is a surrogate pair), a well-formed token that does not exist is a
  // 404, and a limit written as digits is read.
  const emoji = await call('POST', '/v1/users', { first_name: '😀', metadata: { '😀': '\u202Eevil' } })
  t.equal(emoji.statusCode, 201, emoji.body)
  t.match(emoji.json(), { first_name: '😀', metadata: { '😀': '\u202Eevil' } })
  t.equal((await call('GET', `/v1/users/${uniq('nobody')}`)).statusCode, 404)
  t.equal((await call('GET', `/v1/transactions/${uniq('nojit')}`)).statusCode, 404)
  t.equal((await call('GET', `/v1/transactions?limit=2&user_token=${user}`)).statusCode, 200)
})

t.test('JIT: an unpaired surrogate escape anywhere in the message (jsonb refuses it) is decided, never a 500', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  body.card_acceptor.name = 'Corner\uD800Grocery'
  body['\uDC00'] = { k: ['\uDBFFx'] }
  const res = await postJit(app, body)
  t.equal(res.statusCode, 200, res.body)
  t.equal(res.json().jit_funding.token, body.gpa_order.jit_funding.token)
  t.equal((await postJit(app, body)).body, res.body, 'its replay is the same answer')
  t.match(await account(app.db, ch.user), { debits_pending: 100 }, 'held once')

  const odd = jitRequest({ user: ch.user, card: ch.card, amount: 1, token: `${uniq('jit')}\uD800` })
  const res2 = await postJit(app, odd)
  t.ok(res2.statusCode === 200 || res2.statusCode === 402, `a token with a surrogate half is decided (${res2.statusCode} ${res2.body})`)
})
