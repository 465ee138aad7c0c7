import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import type { Queryable } from '../../src/db.js'
import { adminHeaders, build, eventually, jitHeaders, tcpProxy, uniq, type TcpProxy } from '../helper.js'

async function seedCardholder (app: FastifyInstance): Promise<{ user: string, card: string }> {
  const user = uniq('ver-u')
  const card = uniq('ver-c')
  await app.db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await app.db.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  await app.db.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: 'USD', amount_minor: 100_000, forced: true }])
  return { user, card }
}

function authorize (app: FastifyInstance, user: string, card: string, mid = 'm1') {
  return app.inject({
    method: 'POST',
    url: '/marqeta/jit',
    headers: jitHeaders,
    payload: { type: 'authorization', token: uniq('t'), card_token: card, currency_code: 'USD', card_acceptor: { mcc: '5411', mid }, gpa_order: { jit_funding: { token: uniq('j'), method: 'pgfs.authorization', user_token: user, amount: '1.00' } } }
  })
}

/** Redis back, and the instances reconnected to it (an app closes its Redis client with QUIT). */
async function reconnect (proxy: { restore: () => Promise<void> }, apps: FastifyInstance[]): Promise<void> {
  await proxy.restore()
  await eventually(async () => apps.every((app) => app.redis.status === 'ready'), 15_000)
}

const counter = async (app: FastifyInstance, name: string): Promise<number> => {
  const metric = app.telemetry.registry.getSingleMetric(name)
  return (await metric!.get()).values.reduce((sum, v) => sum + v.value, 0)
}

/** Two instances with long-lived local entries, both reaching Redis through one proxy; each has decided once. */
async function twoWarmInstances (t: Test): Promise<{ a: FastifyInstance, b: FastifyInstance, user: string, card: string, proxy: TcpProxy, redisUrl: string }> {
  // Both reach the shared Redis through one proxy the test can cut (every connection dropped, new ones refused).
  const proxy = await tcpProxy(t, 6379)
  const redisUrl = `redis://127.0.0.1:${proxy.port}`
  const overrides = { REDIS_URL: redisUrl, CACHE_LOCAL_TTL_MS: '600000' }
  const a = await build(t, overrides)
  const b = await build(t, overrides)
  const { user, card } = await seedCardholder(a)
  t.equal((await authorize(a, user, card)).statusCode, 200, 'warms instance a')
  t.equal((await authorize(b, user, card)).statusCode, 200, 'warms instance b')
  return { a, b, user, card, proxy, redisUrl }
}

t.test('a card suspended while Redis is unreachable: the admin call answers, the other instance declines', async (t) => {
  const { a, b, user, card, proxy } = await twoWarmInstances(t)
  await proxy.cut()
  const failures = await counter(a, 'cache_invalidation_failures_total')
  const patch = await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'SUSPENDED' } })
  t.equal(patch.statusCode, 200, 'the admin call does not depend on Redis')
  t.ok(await counter(a, 'cache_invalidation_failures_total') > failures, 'the failed invalidation is counted')
  const onB = await authorize(b, user, card)
  t.equal(onB.statusCode, 402)
  t.equal(onB.json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
  await reconnect(proxy, [a, b])
})

t.test('an auth control created while Redis is unreachable blocks the very next request on the other instance', async (t) => {
  const { a, b, user, card, proxy } = await twoWarmInstances(t)
  await proxy.cut()
  const created = await a.inject({ method: 'POST', url: '/v1/authcontrols', headers: adminHeaders, payload: { association: { card_token: card }, merchant_scope: { mcc: '5411' } } })
  t.equal(created.statusCode, 201)
  const stale = await counter(b, 'jit_stale_context_total')
  const onB = await authorize(b, user, card)
  t.equal(onB.statusCode, 402, 'b held the controls without it in its local level')
  t.equal(onB.json().jit_funding.decline_reason, 'TRANSACTION_NOT_PERMITTED')
  t.ok(await counter(b, 'jit_stale_context_total') > stale, 'b made the decision again on a fresh context')
  await reconnect(proxy, [a, b])
})

t.test('a program-wide auth control created while Redis is unreachable applies at once everywhere', async (t) => {
  const { a, b, user, card, proxy } = await twoWarmInstances(t)
  // A merchant id of this test's own: other test files share the program.
  const mid = uniq('mid')
  t.equal((await authorize(b, user, card, mid)).statusCode, 200, 'the merchant is allowed before')
  await proxy.cut()
  const created = await a.inject({ method: 'POST', url: '/v1/authcontrols', headers: adminHeaders, payload: { association: {}, merchant_scope: { mid } } })
  t.equal(created.statusCode, 201)
  const onB = await authorize(b, user, card, mid)
  t.equal(onB.statusCode, 402)
  t.equal(onB.json().jit_funding.decline_reason, 'TRANSACTION_NOT_PERMITTED')
  await a.inject({ method: 'DELETE', url: `/v1/authcontrols/${created.json().token as string}`, headers: adminHeaders })
  await reconnect(proxy, [a, b])
})

t.test('a card reactivated while Redis is unreachable approves on the next request where SUSPENDED was cached', async (t) => {
  const { a, b, user, card, proxy, redisUrl } = await twoWarmInstances(t)
  t.equal((await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'SUSPENDED' } })).statusCode, 200)
  // b learns of the suspension (pub/sub, or the version check) and caches SUSPENDED.
  t.equal((await authorize(b, user, card)).json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
  t.equal((await authorize(b, user, card)).json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE', 'served from the cache')
  await proxy.cut()
  t.equal((await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'ACTIVE' } })).statusCode, 200)
  t.equal((await authorize(b, user, card)).statusCode, 200, 'the stale SUSPENDED decline does not stand')

  // Redis back, still holding the values the failed invalidation did not drop: a new instance reads them, is told
  // they are stale, and its fresh load overwrites them.
  await reconnect(proxy, [a, b])
  t.equal((await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'SUSPENDED' } })).statusCode, 200)
  await proxy.cut()
  t.equal((await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'ACTIVE' } })).statusCode, 200)
  await reconnect(proxy, [a, b])
  const c = await build(t, { REDIS_URL: redisUrl })
  t.equal((await authorize(c, user, card)).statusCode, 200, 'a new instance on stale Redis values approves')
  // The fresh values were written back on c's connection, which runs commands in order.
  await c.redis.ping()
  const d = await build(t, { REDIS_URL: redisUrl })
  const stale = await counter(d, 'jit_stale_context_total')
  t.equal((await authorize(d, user, card)).statusCode, 200)
  t.equal(await counter(d, 'jit_stale_context_total'), stale, 'the refreshed Redis values are current')
})

t.test('a control moved between scopes bumps the version of the scope it left as well as the one it joined', async (t) => {
  const app = await build(t)
  const [x, y] = [await seedCardholder(app), await seedCardholder(app)]
  const control = uniq('ac')
  // A merchant id of this test's own: other test files share the program.
  await app.db.query('INSERT INTO auth_controls (token, user_token, mid) VALUES ($1, $2, $3)', [control, x.user, uniq('mid')])
  t.teardown(async () => { await app.db.query('DELETE FROM auth_controls WHERE token = $1', [control]) })
  const versions = async (db: Queryable): Promise<{ x: bigint, y: bigint, program: bigint }> => {
    const { rows: [r] } = await db.query(`SELECT (SELECT context_version FROM users WHERE token = $1) AS x,
      (SELECT context_version FROM users WHERE token = $2) AS y, (SELECT version FROM program_context) AS program`, [x.user, y.user])
    return { x: BigInt(r.x), y: BigInt(r.y), program: BigInt(r.program) }
  }
  const changes = async (sql: string): Promise<string[]> => await app.db.transaction(async (db) => {
    // Other test files create program-wide controls: none can bump the program version between the two reads.
    await db.query('LOCK TABLE program_context IN EXCLUSIVE MODE')
    const before = await versions(db)
    await db.query(sql, [control, y.card])
    const after = await versions(db)
    return (['x', 'y', 'program'] as const).filter((k) => after[k] !== before[k])
  })
  t.same(await changes('UPDATE auth_controls SET user_token = NULL WHERE token = $1 AND $2::text IS NOT NULL'), ['x', 'program'], 'from a user to the program')
  t.same(await changes('UPDATE auth_controls SET card_token = $2 WHERE token = $1'), ['y', 'program'], "from the program to a user's card")
  t.same(await changes('UPDATE auth_controls SET mcc = $2 WHERE token = $1 AND false'), [], 'no row changed')
  t.same(await changes("UPDATE auth_controls SET mcc = '5999' WHERE token = $1 AND $2::text IS NOT NULL"), ['y'], 'within one scope')
})
