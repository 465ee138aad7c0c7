import t from 'tap'
import fc from 'fast-check'
import net from 'node:net'
import type { LightMyRequestResponse } from 'fastify'
import { adminHeaders, build, jitHeaders, uniq, webhookHeaders } from '../helper.js'
import { auditLedger } from '../../src/audit.js'
import { signBody } from '../../src/webhooks/signature.js'
import {
  absentToken, authKind, authorization, contentType, encode, encoding, hostileString, mutationsOf, pathSegment, queryString,
  type AuthKind, type Encoding, type HostileRequest
} from './arbitraries.js'

/*
 * Hostile requests on every route (routes/**): wrong types, huge and deep JSON, odd encodings, unicode tokens, duplicate
 * keys, missing and extra fields, bad credentials and signatures, mutated paths and queries. Properties: never a 5xx,
 * never a stack trace or an internal path in the body, every refusal has the one error shape, a request aimed at a
 * funded user with something invalid is refused, and the ledger does not move (balances through the API, the audit of
 * those users, the program-wide conservation check, and no decision recorded for them).
 */

const SEED = process.env.FC_SEED !== undefined ? Number(process.env.FC_SEED) : 20261204
const RUNS = Number(process.env.FUZZ_RUNS ?? 150)
// The Marqeta routes face the outside: three times as many requests.
const MARQETA_FACTOR = 3
const WEBHOOK_SECRET = 'fuzz-webhook-secret'

const app = await build(t, { WEBHOOK_SECRET, ROLE: 'api', JIT_DEADLINE_MS: '2900' })
const admin = adminHeaders.authorization
const jitAuth = jitHeaders.authorization
const webhookAuth = webhookHeaders.authorization

async function call (method: string, url: string, body?: unknown, headers: Record<string, string> = {}): Promise<LightMyRequestResponse> {
  return await app.inject({ method: method as 'GET', url, headers: { authorization: admin, ...headers }, ...(body === undefined ? {} : { payload: body as object }) })
}

// Two funded cardholders, created through the API: every request aimed at them must be refused.
const victims: Array<{ user: string, card: string }> = []
for (let i = 0; i < 2; i++) {
  const user = uniq('fz-victim')
  const card = uniq('fz-card')
  const answers = [
    await call('POST', '/v1/users', { token: user }),
    await call('POST', '/v1/cards', { token: card, user_token: user }),
    await call('POST', `/v1/users/${user}/loads`, { amount: '100.00', currency_code: 'USD' }, { 'idempotency-key': uniq('fz-load') })
  ]
  for (const res of answers) if (res.statusCode !== 201) throw new Error(`setup failed: ${res.statusCode} ${res.body}`)
  victims.push({ user, card })
}
const victimUsers = victims.map((v) => v.user)

interface LedgerSnapshot { balances: unknown[], scoped: unknown, conservation: string[], decisions: number }

async function ledgerSnapshot (): Promise<LedgerSnapshot> {
  const balances = await Promise.all(victimUsers.map(async (u) => (await call('GET', `/v1/users/${u}/balances`)).json()))
  // The audit scoped to these users (the accounts, holds and entries it checks, and any violation), and the
  // program-wide conservation sums that `npm run audit` checks (other test files move money meanwhile: only the
  // invariant is comparable, not the totals).
  const scoped = await auditLedger(app.db, { userTokens: victimUsers })
  const global = await auditLedger(app.db)
  const { rows } = await app.db.query('SELECT count(*)::int AS n FROM decisions WHERE user_token = ANY($1)', [victimUsers])
  return { balances, scoped, conservation: global.violations.filter((v) => v.check === 'conservation').map((v) => v.message), decisions: rows[0].n }
}

const before = await ledgerSnapshot()
t.test('the ledger conserves money before the run', async (t) => { t.same(before.conservation, []) })

// ---------------------------------------------------------------------------------------------------------------------
// Request generators, one per route.

const pick = <T>(...values: T[]): fc.Arbitrary<T> => fc.constantFrom(...values)
const victim = fc.nat({ max: victims.length - 1 }).map((i) => victims[i])

function withBody (headers: Record<string, string>, type: string | undefined): Record<string, string> {
  return type === undefined ? headers : { ...headers, 'content-type': type }
}

function authHeaders (kind: AuthKind, valid: string): Record<string, string> {
  const value = authorization(kind, valid)
  return value === undefined ? {} : { authorization: value }
}

/** A body route: a mutated base body, an encoding, a content type, credentials. */
function bodyRequest (route: string, method: string, url: fc.Arbitrary<{ url: string, victim: boolean }>, base: () => unknown,
  valid: string, options: { forceInvalid?: fc.Arbitrary<(body: any) => void>, fix?: (body: any) => void, headers?: fc.Arbitrary<Record<string, string>> } = {}): fc.Arbitrary<HostileRequest> {
  return fc.record({
    target: url,
    body: fc.oneof({ weight: 1, arbitrary: fc.constant(base) }, { weight: 4, arbitrary: mutationsOf(base) }),
    force: options.forceInvalid ?? fc.constant(undefined),
    how: encoding,
    depth: fc.integer({ min: 65, max: 6000 }),
    type: contentType,
    auth: authKind,
    extra: options.headers ?? fc.constant({})
  }).map(({ target, body, force, how, depth, type, auth, extra }) => {
    let value = body()
    const aimed = target.victim
    // Aimed at a funded user with valid credentials: the body is made invalid, so it must be refused.
    if (aimed && auth === 'valid' && force !== undefined && value !== null && typeof value === 'object' && !Array.isArray(value)) force(value)
    if (!aimed) options.fix?.(value)
    if (aimed && auth === 'valid' && force === undefined) value = undefined
    return {
      route,
      method,
      url: target.url,
      headers: withBody({ ...authHeaders(auth, valid), ...extra }, type),
      payload: value === undefined ? '' : encode(value, how as Encoding, depth),
      mustReject: aimed
    }
  })
}

/** A path with `:token` replaced: a funded user's token, an absent one, or a hostile segment. */
const tokenPath = (template: (token: string) => string, victimToken: (v: { user: string, card: string }) => string | undefined): fc.Arbitrary<{ url: string, victim: boolean }> =>
  fc.oneof(
    ...(victimToken(victims[0]) === undefined ? [] : [victim.map((v) => ({ url: template(victimToken(v) as string), victim: true }))]),
    fc.constant(null).map(() => ({ url: template(absentToken()), victim: false })),
    pathSegment.map((segment) => ({ url: template(segment), victim: false }))
  )

/** A GET (or DELETE) with a mutated path and query string and any credentials. */
function readRequest (route: string, method: string, path: fc.Arbitrary<{ url: string, victim: boolean }>, queryKeys: string[], valid: string): fc.Arbitrary<HostileRequest> {
  return fc.record({ path, query: queryString(queryKeys), auth: authKind, type: contentType }).map(({ path, query, auth, type }) => ({
    route,
    method,
    url: path.url + query,
    headers: withBody(authHeaders(auth, valid), type),
    // A DELETE aimed at a user's object with any credentials, or any read: must not move money either way.
    mustReject: false
  }))
}

const jitBody = (user: string, card: string) => (): Record<string, unknown> => ({
  type: 'authorization',
  state: 'PENDING',
  token: uniq('fz-txn'),
  user_token: user,
  card_token: card,
  amount: '1.00',
  currency_code: 'USD',
  card_acceptor: { mid: '000000091234', mcc: '5411', name: 'Fuzz Grocery' },
  pos: { partial_approval_capable: false },
  gpa_order: { jit_funding: { token: uniq('fz-jit'), method: 'pgfs.authorization', user_token: user, amount: '1.00' } }
})

const webhookCredit = (user: string, card: string) => (): Record<string, unknown> => ({
  transactions: [{
    type: 'refund',
    state: 'COMPLETION',
    token: uniq('fz-wtxn'),
    user_token: user,
    card_token: card,
    amount: 1,
    currency_code: 'USD',
    gpa_order: { jit_funding: { token: uniq('fz-wjit'), method: 'pgfs.refund', user_token: user, amount: 1 } }
  }]
})

// Ways to make a body certainly invalid without touching anything else of it.
const invalidJit = pick<(b: any) => void>(
  (b) => { b.gpa_order = { jit_funding: { ...b.gpa_order?.jit_funding, token: {} } } },
  (b) => { b.gpa_order = { jit_funding: { ...b.gpa_order?.jit_funding, amount: { value: 1 } } } },
  (b) => { b.gpa_order = 'x' },
  (b) => { delete b.gpa_order; delete b.gpa_order_unload },
  (b) => { b.gpa_order = { jit_funding: { ...b.gpa_order?.jit_funding, user_token: 'u'.repeat(65) } } },
  (b) => { b.card_token = { token: 'x' } },
  (b) => { b.gpa_order = { jit_funding: { ...b.gpa_order?.jit_funding, method: '' } } }
)
const invalidFunds = pick<(b: any) => void>(
  (b) => { b.amount = {} }, (b) => { b.amount = 'abc' }, (b) => { b.amount = '1e3' }, (b) => { b.amount = '' },
  (b) => { b.currency_code = 'usd' }, (b) => { b.currency_code = 'US\u0000' }, (b) => { b.currency_code = 840 }, (b) => { delete b.currency_code }
)
const invalidWebhook = pick<(b: any) => void>(
  (b) => { b.transactions = 'x' }, (b) => { b.transactions = [1, 'a'] }, (b) => { b.transactions = { token: 'x' } },
  (b) => { b.cards = [null] }, (b) => { b.pings = 7 }, (b) => { b.usertransitions = [[{}]] }
)
const invalidStatus = pick<(b: any) => void>((b) => { b.status = 'DELETED' }, (b) => { b.status = 1 }, (b) => { b.status = {} }, (b) => { delete b.status })
const invalidState = pick<(b: any) => void>((b) => { b.state = 'LOST' }, (b) => { b.state = null }, (b) => { b.state = ['ACTIVE', 'x'] }, (b) => { delete b.state })

/** Controls must never become program-wide by accident: an association without a token is given an absent one. */
function scopedToNobody (body: any): void {
  const a = body?.association
  if (a !== null && typeof a === 'object' && !Array.isArray(a) && typeof a.user_token !== 'string' && typeof a.card_token !== 'string') a.user_token = absentToken()
}

const adminPath = (p: string): string => `/v1${p}`
const routes: Array<{ route: string, gen: fc.Arbitrary<HostileRequest> }> = [
  { route: 'POST /v1/users', gen: bodyRequest('POST /v1/users', 'POST', fc.constant(null).map(() => ({ url: '/v1/users', victim: false })), () => ({ token: absentToken(), first_name: 'Ada', last_name: 'L', metadata: { k: 'v' } }), admin) },
  { route: 'GET /v1/users/:token', gen: readRequest('GET /v1/users/:token', 'GET', tokenPath((x) => adminPath(`/users/${x}`), (v) => v.user), ['x'], admin) },
  { route: 'PATCH /v1/users/:token', gen: bodyRequest('PATCH /v1/users/:token', 'PATCH', tokenPath((x) => adminPath(`/users/${x}`), (v) => v.user), () => ({ status: 'ACTIVE' }), admin, { forceInvalid: invalidStatus }) },
  { route: 'GET /v1/users/:token/balances', gen: readRequest('GET /v1/users/:token/balances', 'GET', tokenPath((x) => adminPath(`/users/${x}/balances`), (v) => v.user), ['currency_code'], admin) },
  ...(['loads', 'unloads'] as const).map((direction) => ({
    route: `POST /v1/users/:token/${direction}`,
    gen: bodyRequest(`POST /v1/users/:token/${direction}`, 'POST', tokenPath((x) => adminPath(`/users/${x}/${direction}`), (v) => v.user),
      () => ({ amount: '1.00', currency_code: 'USD' }), admin, {
        forceInvalid: invalidFunds,
        headers: fc.oneof(fc.constant(null).map(() => ({ 'idempotency-key': uniq('fz-key') })), hostileString.filter((s) => /^[\t\x20-\x7e\x80-\xff]{1,300}$/.test(s)).map((k) => ({ 'idempotency-key': k })), fc.constant({}))
      })
  })),
  { route: 'POST /v1/cards', gen: bodyRequest('POST /v1/cards', 'POST', fc.constant(null).map(() => ({ url: '/v1/cards', victim: false })), () => ({ token: absentToken(), user_token: absentToken(), state: 'ACTIVE' }), admin) },
  { route: 'GET /v1/cards/:token', gen: readRequest('GET /v1/cards/:token', 'GET', tokenPath((x) => adminPath(`/cards/${x}`), (v) => v.card), [], admin) },
  { route: 'PATCH /v1/cards/:token', gen: bodyRequest('PATCH /v1/cards/:token', 'PATCH', tokenPath((x) => adminPath(`/cards/${x}`), (v) => v.card), () => ({ state: 'ACTIVE' }), admin, { forceInvalid: invalidState }) },
  {
    route: 'POST /v1/velocitycontrols',
    gen: bodyRequest('POST /v1/velocitycontrols', 'POST', fc.constant(null).map(() => ({ url: '/v1/velocitycontrols', victim: false })), () => ({
      token: absentToken(), name: 'fz', association: { user_token: absentToken(), card_token: absentToken() }, currency_code: 'USD', amount_limit: '1.00', usage_limit: 3, velocity_window: 'DAY', merchant_scope: { mcc: '5411' }
    }), admin, { fix: scopedToNobody })
  },
  { route: 'GET /v1/velocitycontrols', gen: readRequest('GET /v1/velocitycontrols', 'GET', fc.constant({ url: '/v1/velocitycontrols', victim: false }), ['user_token', 'card_token'], admin) },
  { route: 'DELETE /v1/velocitycontrols/:token', gen: readRequest('DELETE /v1/velocitycontrols/:token', 'DELETE', tokenPath((x) => adminPath(`/velocitycontrols/${x}`), () => undefined), [], admin) },
  {
    route: 'POST /v1/authcontrols',
    gen: bodyRequest('POST /v1/authcontrols', 'POST', fc.constant(null).map(() => ({ url: '/v1/authcontrols', victim: false })), () => ({
      token: absentToken(), name: 'fz', association: { user_token: absentToken(), card_token: absentToken() }, merchant_scope: { mcc: '5411', mid: 'm' }
    }), admin, { fix: scopedToNobody })
  },
  { route: 'GET /v1/authcontrols', gen: readRequest('GET /v1/authcontrols', 'GET', fc.constant({ url: '/v1/authcontrols', victim: false }), ['user_token', 'card_token'], admin) },
  { route: 'DELETE /v1/authcontrols/:token', gen: readRequest('DELETE /v1/authcontrols/:token', 'DELETE', tokenPath((x) => adminPath(`/authcontrols/${x}`), () => undefined), [], admin) },
  { route: 'GET /v1/transactions', gen: readRequest('GET /v1/transactions', 'GET', fc.constant({ url: '/v1/transactions', victim: false }), ['user_token', 'card_token', 'limit', 'limit'], admin) },
  { route: 'GET /v1/transactions/:jit_token', gen: readRequest('GET /v1/transactions/:jit_token', 'GET', tokenPath((x) => adminPath(`/transactions/${x}`), () => undefined), [], admin) },
  { route: 'GET /v1/jit/stats', gen: readRequest('GET /v1/jit/stats', 'GET', fc.constant({ url: '/v1/jit/stats', victim: false }), ['stage'], admin) },
  {
    route: 'POST /marqeta/jit',
    gen: fc.oneof(
      // Aimed at a funded cardholder: with valid credentials the body is made invalid; otherwise the credentials are bad.
      victim.chain((v) => bodyRequest('POST /marqeta/jit', 'POST', fc.constant({ url: '/marqeta/jit', victim: true }), jitBody(v.user, v.card), jitAuth, { forceInvalid: invalidJit })),
      fc.constant(null).chain(() => bodyRequest('POST /marqeta/jit', 'POST', fc.constant({ url: '/marqeta/jit', victim: false }), jitBody(absentToken(), absentToken()), jitAuth))
    )
  },
  {
    route: 'POST /marqeta/webhooks',
    gen: fc.record({
      v: victim,
      how: encoding,
      depth: fc.integer({ min: 65, max: 6000 }),
      type: contentType,
      auth: authKind,
      signature: fc.oneof({ weight: 6, arbitrary: fc.constant('valid') }, { weight: 6, arbitrary: pick('missing', 'wrong', 'sha1', 'uppercase', 'other-body', 'repeated') }),
      body: fc.oneof(fc.constant(null), mutationsOf(() => ({}))),
      force: invalidWebhook
    }).map(({ v, how, depth, type, auth, signature, body, force }) => {
      // Valid credentials and signature: the body is made invalid (an accepted one would go to the shared queue).
      let value: any = body === null ? webhookCredit(v.user, v.card)() : body()
      if (auth === 'valid' && signature === 'valid') {
        if (value === null || typeof value !== 'object' || Array.isArray(value)) value = { transactions: value }
        force(value)
      }
      const payload = encode(value, how, depth)
      const raw = Buffer.isBuffer(payload) ? payload : Buffer.from(payload)
      const good = signBody(raw, WEBHOOK_SECRET)
      const sig: Record<string, string> = {
        valid: good, missing: '', wrong: good.replace(/^./, (c) => c === '0' ? '1' : '0'), sha1: signBody(raw, WEBHOOK_SECRET, 'sha1'),
        uppercase: good.toUpperCase(), 'other-body': signBody(raw + ' ', WEBHOOK_SECRET), repeated: `${good}, ${good}`
      }
      const headers = withBody({ ...authHeaders(auth, webhookAuth), ...(signature === 'missing' ? {} : { 'x-marqeta-signature': sig[signature] }) }, type)
      return { route: 'POST /marqeta/webhooks', method: 'POST', url: '/marqeta/webhooks', headers, payload, mustReject: true }
    })
  },
  ...['/health', '/ready', '/metrics'].map((path) => ({
    route: `GET ${path}`,
    gen: fc.record({ query: queryString(['verbose', 'name[]']), method: pick('GET', 'GET', 'HEAD', 'POST', 'OPTIONS'), type: contentType }).map(({ query, method, type }) => ({
      route: `GET ${path}`, method, url: path + query, headers: withBody({}, type), payload: method === 'POST' ? '{"x":1}' : undefined, mustReject: false
    }))
  })),
  {
    route: 'unknown routes',
    gen: fc.record({ segments: fc.array(pathSegment, { minLength: 1, maxLength: 4 }), prefix: pick('', '/v1', '/marqeta', '/v1/users/x'), method: pick('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'TRACE') })
      .map(({ segments, prefix, method }) => ({ route: 'unknown routes', method, url: `${prefix}/${segments.join('/')}`, headers: { authorization: admin }, mustReject: false }))
  }
]

// ---------------------------------------------------------------------------------------------------------------------
// What every answer must be.

const ERROR_KEYS = new Set(['statusCode', 'error', 'message', 'code'])
const STACK = /\n\s+at |\bat [\w.$<>]+ \(|\(?\/(work|home|usr|app)\/|node_modules|file:\/\/|\.[jt]s:\d+:\d+/

function problemWith (req: HostileRequest, res: LightMyRequestResponse): string | undefined {
  const { statusCode: status, body } = res
  const probe503 = status === 503 && req.route === 'GET /ready' && /"ready":false/.test(body)
  if (status >= 500 && !probe503) return `answered ${status}: ${body.slice(0, 300)}`
  if (STACK.test(body)) return `body shows internals: ${body.slice(0, 300)}`
  if (req.mustReject && (status < 400 || status === 402)) return `a request that must be refused was answered ${status}: ${body.slice(0, 300)}`
  if (req.method === 'HEAD' || body === '') return status >= 400 && req.method !== 'HEAD' ? `empty ${status} body` : undefined
  const jitAnswer = req.route === 'POST /marqeta/jit' && (status === 200 || status === 402)
  let json: any
  try { json = JSON.parse(body) } catch { return req.route === 'GET /metrics' && status === 200 ? undefined : `not JSON (${status}): ${body.slice(0, 200)}` }
  if (jitAnswer) return typeof json?.jit_funding?.token === 'string' ? undefined : `JIT ${status} without jit_funding: ${body.slice(0, 200)}`
  if (status >= 400) {
    const shape = json !== null && typeof json === 'object' && json.statusCode === status && typeof json.error === 'string' &&
      typeof json.message === 'string' && (json.code === undefined || typeof json.code === 'string') && Object.keys(json).every((k) => ERROR_KEYS.has(k))
    if (!shape && !probe503) return `error body is not {statusCode, error, message, code?}: ${body.slice(0, 200)}`
  }
  return undefined
}

interface RouteFigures { tried: number, fiveXX: number, statuses: Record<number, number> }
const figures = new Map<string, RouteFigures>()

t.comment(`fuzz seed ${SEED} (rerun with FC_SEED=${SEED}; route i uses seed + i), ${RUNS} requests per route (FUZZ_RUNS), ${RUNS * MARQETA_FACTOR} on the Marqeta routes`)

for (const [index, { route, gen }] of routes.entries()) {
  await t.test(route, async (t) => {
    const seed = SEED + index
    const f: RouteFigures = { tried: 0, fiveXX: 0, statuses: {} }
    figures.set(route, f)
    const result = await fc.check(fc.asyncProperty(gen, async (req) => {
      let res: LightMyRequestResponse
      try {
        res = await app.inject({ method: req.method as 'GET', url: req.url, headers: req.headers, ...(req.payload === undefined ? {} : { payload: req.payload }) })
      } catch (err) {
        // light-my-request refuses some requests before they reach the server (e.g. a header it cannot send).
        if (/Invalid|character|header/i.test((err as Error).message)) return true
        throw err
      }
      f.tried++
      f.statuses[res.statusCode] = (f.statuses[res.statusCode] ?? 0) + 1
      if (res.statusCode >= 500) f.fiveXX++
      const problem = problemWith(req, res)
      if (problem !== undefined) throw new Error(problem)
      return true
    }), { seed, numRuns: route.startsWith('POST /marqeta/') ? RUNS * MARQETA_FACTOR : RUNS, endOnFailure: true })
    t.notOk(result.failed, result.failed ? (fc.defaultReportMessage(result) ?? 'failed').slice(0, 4000) : `seed ${seed}: ${result.numRuns} requests passed`)
    const statuses = Object.entries(f.statuses).map(([s, n]) => `${s}×${n}`).join(' ')
    t.comment(`${route}: ${f.tried} requests, ${f.fiveXX} 5xx (${statuses})`)
    const now = await ledgerSnapshot()
    t.same(now, before, 'no ledger change: balances, audit of the funded users, conservation, decisions')
  })
}

// ---------------------------------------------------------------------------------------------------------------------
// Malformed HTTP that app.inject cannot express, on a real socket.

t.test('malformed HTTP on a raw socket: a 4xx or a closed connection, never a 5xx', async (t) => {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as net.AddressInfo
  const auth = `Authorization: ${admin}\r\n`
  const requests: Array<[string, string | Buffer]> = [
    ['garbage request line', 'FOO BAR BAZ\r\n\r\n'],
    ['header name with a space', `GET /v1/jit/stats HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n${auth}\r\n`],
    ['NUL in a header value', Buffer.from(`GET /v1/jit/stats HTTP/1.1\r\nHost: x\r\nX-A: a\u0000b\r\n${auth}\r\n`, 'latin1')],
    ['a 20 KB header', `GET /v1/jit/stats HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n${auth}\r\n`],
    ['both Content-Length and chunked', `POST /v1/users HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n`],
    ['broken chunk size', `POST /v1/users HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n`],
    ['raw invalid UTF-8 in the path', Buffer.concat([Buffer.from('GET /v1/users/'), Buffer.from([0xFF, 0xFE, 0xC3, 0x28]), Buffer.from(` HTTP/1.1\r\nHost: x\r\n${auth}\r\n`)])],
    ['broken percent-escape in the path', `GET /v1/users/%E0%A4%A HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
    ['NUL escape in a path token', `GET /v1/transactions/%00 HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
    ['absolute-form target', `GET http://evil.example/v1/jit/stats HTTP/1.1\r\nHost: x\r\n${auth}\r\n`],
    ['HTTP/1.0 without Host', `GET /health HTTP/1.0\r\n\r\n`],
    ['a body over the limit announced', `POST /marqeta/webhooks HTTP/1.1\r\nHost: x\r\nAuthorization: ${webhookAuth}\r\nContent-Type: application/json\r\nContent-Length: 999999999\r\n\r\n{}`],
    ['JIT body with a BOM and a charset', Buffer.concat([Buffer.from(`POST /marqeta/jit HTTP/1.1\r\nHost: x\r\nAuthorization: ${jitAuth}\r\nContent-Type: application/json; charset=iso-8859-1\r\nContent-Length: 5\r\n\r\n`), Buffer.from([0xEF, 0xBB, 0xBF]), Buffer.from('{}')])],
    ['unsupported HTTP version', `GET /health HTTP/9.9\r\nHost: x\r\n\r\n`]
  ]
  let fiveXX = 0
  for (const [name, bytes] of requests) {
    const answer = await rawRequest(port, bytes)
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(answer)?.[1] ?? 0)
    if (status >= 500) fiveXX++
    t.ok(status === 0 || status < 500, `${name}: ${status === 0 ? 'connection closed' : status}`)
    t.notMatch(answer, STACK, `${name}: no internals in the answer`)
  }
  figures.set('raw socket', { tried: requests.length, fiveXX, statuses: {} })
  t.same(await ledgerSnapshot(), before, 'no ledger change')
})

/** Sends bytes, returns what came back before the server closed the connection (or 2 s passed). */
async function rawRequest (port: number, bytes: string | Buffer): Promise<string> {
  return await new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1')
    let answer = ''
    const done = (): void => { clearTimeout(timer); socket.destroy(); resolve(answer) }
    const timer = setTimeout(done, 2000)
    socket.on('data', (d) => {
      answer += d.toString('latin1')
      // One complete answer is enough: the server may keep the connection open.
      if (/\r\n\r\n/.test(answer) && /content-length: (\d+)/i.test(answer)) {
        const length = Number(/content-length: (\d+)/i.exec(answer)?.[1])
        if (answer.length - answer.indexOf('\r\n\r\n') - 4 >= length) done()
      }
    })
    socket.on('error', done)
    socket.on('close', done)
    socket.write(bytes)
  })
}

t.test('figures', async (t) => {
  let total = 0
  let fiveXX = 0
  for (const [route, f] of figures) { total += f.tried; fiveXX += f.fiveXX; t.comment(`  ${route.padEnd(36)} ${String(f.tried).padStart(5)} requests  ${f.fiveXX} 5xx`) }
  t.comment(`fuzz total: ${total} requests on ${figures.size} routes, ${fiveXX} 5xx, ledger changes: ${JSON.stringify(await ledgerSnapshot()) === JSON.stringify(before) ? 0 : 'SOME'}`)
  t.equal(fiveXX, 0, 'no 5xx anywhere')
})
