import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { adminHeaders, build, jitHeaders, uniq } from '../helper.js'

async function seedCardholder (app: FastifyInstance, minor = 100_000): Promise<{ user: string, card: string }> {
  const user = uniq('cache-u')
  const card = uniq('cache-c')
  await app.db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await app.db.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  await app.db.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: 'USD', amount_minor: minor, forced: true }])
  return { user, card }
}

function authorize (app: FastifyInstance, user: string, card: string, amount = '1.00') {
  return app.inject({
    method: 'POST',
    url: '/marqeta/jit',
    headers: jitHeaders,
    payload: { type: 'authorization', token: uniq('t'), card_token: card, currency_code: 'USD', card_acceptor: { mcc: '5411', mid: 'm1' }, gpa_order: { jit_funding: { token: uniq('j'), method: 'pgfs.authorization', user_token: user, amount } } }
  })
}

t.test('a card suspended through the admin API is declined on the very next request, on either instance', async (t) => {
  const a = await build(t, { CACHE_LOCAL_TTL_MS: '600000' })
  const b = await build(t, { CACHE_LOCAL_TTL_MS: '600000' })
  const { user, card } = await seedCardholder(a)
  t.equal((await authorize(a, user, card)).statusCode, 200, 'warms instance a')
  t.equal((await authorize(b, user, card)).statusCode, 200, 'warms instance b')

  const patch = await a.inject({ method: 'PATCH', url: `/v1/cards/${card}`, headers: adminHeaders, payload: { state: 'SUSPENDED' } })
  t.equal(patch.statusCode, 200)
  const onA = await authorize(a, user, card)
  t.equal(onA.statusCode, 402)
  t.equal(onA.json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
  // b may not have had the invalidation yet: the version check declines its first request after the answer all the same.
  const onB = await authorize(b, user, card)
  t.equal(onB.statusCode, 402)
  t.equal(onB.json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
})

t.test('a stale cache can only decline: PostgreSQL re-checks the card state inside the decision', async (t) => {
  const app = await build(t, { CACHE_LOCAL_TTL_MS: '600000' })
  const { user, card } = await seedCardholder(app)
  t.equal((await authorize(app, user, card)).statusCode, 200)
  // Changed behind the cache's back: no invalidation at all.
  await app.db.query("UPDATE cards SET state = 'SUSPENDED' WHERE token = $1", [card])
  const res = await authorize(app, user, card)
  t.equal(res.statusCode, 402)
  t.equal(res.json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
})

t.test('Redis on a closed port: decisions stay right and the errors are counted', async (t) => {
  const app = await build(t, { REDIS_URL: 'redis://127.0.0.1:1' })
  const { user, card } = await seedCardholder(app, 300)
  const answers = []
  for (let i = 0; i < 5; i++) answers.push((await authorize(app, user, card)).statusCode)
  t.same(answers, [200, 200, 200, 402, 402], 'three 1.00 holds fit in 3.00, then insufficient funds')
  await app.db.query("UPDATE cards SET state = 'SUSPENDED' WHERE token = $1", [card])
  await app.invalidateContext({ cards: [card] })
  t.equal((await authorize(app, user, card)).json().jit_funding.decline_reason, 'CARD_NOT_ACTIVE')
  // Read from the registry that /metrics renders (test/plugins/health.test.ts tests the exposition): once, in a loaded
  // CI run, this test's /metrics body came back without the line.
  const errors = (await app.telemetry.cacheErrors.get()).values[0]?.value ?? 0
  t.ok(errors > 0, `cache_errors_total = ${errors}`)
})

t.test('hit rate stays above 80% on Zipf-distributed traffic over many cards', async (t) => {
  const app = await build(t)
  const prefix = uniq('zipf')
  const holders = Array.from({ length: 200 }, (_v, i) => ({ user: `${prefix}-u${i}`, card: `${prefix}-c${i}` }))
  await app.db.query('INSERT INTO users (token) SELECT unnest($1::text[])', [holders.map((h) => h.user)])
  await app.db.query('INSERT INTO cards (token, user_token) SELECT unnest($1::text[]), unnest($2::text[])', [holders.map((h) => h.card), holders.map((h) => h.user)])
  await app.db.query(`SELECT ledger_apply(jsonb_build_object('kind', 'credit', 'effect_key', u || ':load', 'user_token', u,
    'currency_code', 'USD', 'amount_minor', 100000, 'forced', true)) FROM unnest($1::text[]) AS u`, [holders.map((h) => h.user)])
  // Zipf(s=1) over 200 cards, deterministic.
  const weights = holders.map((_h, i) => 1 / (i + 1))
  const total = weights.reduce((a, b) => a + b, 0)
  let seed = 42
  const random = (): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed / 2 ** 31 }
  const pick = (): { user: string, card: string } => {
    let r = random() * total
    for (let i = 0; i < weights.length; i++) { r -= weights[i]; if (r <= 0) return holders[i] }
    return holders[holders.length - 1]
  }
  const counter = async (name: 'cacheHits' | 'cacheMisses', level: string): Promise<number> =>
    (await app.telemetry[name].get()).values.find((v) => v.labels.level === level)?.value ?? 0
  const snapshot = async (): Promise<number[]> => [await counter('cacheHits', 'local'), await counter('cacheHits', 'redis'), await counter('cacheMisses', 'local')]
  const [localHits0, redisHits0, localMisses0] = await snapshot()
  for (let i = 0; i < 1500; i++) {
    const { user, card } = pick()
    const res = await authorize(app, user, card, '0.01')
    if (res.statusCode !== 200) t.fail(`unexpected ${res.statusCode}`)
  }
  const [localHits1, redisHits1, localMisses1] = await snapshot()
  // Every lookup starts at the local level; a hit at either level spares PostgreSQL.
  const hits = (localHits1 - localHits0) + (redisHits1 - redisHits0)
  const lookups = (localHits1 - localHits0) + (localMisses1 - localMisses0)
  const rate = hits / lookups
  t.comment(`hits ${hits} of ${lookups} lookups, hit rate ${(rate * 100).toFixed(1)}%`)
  t.ok(rate > 0.8, `hit rate ${(rate * 100).toFixed(1)}% > 80%`)
})

t.test('CACHE_ENABLED=false: every decision reads PostgreSQL, no cache level is touched', async (t) => {
  const app = await build(t, { CACHE_ENABLED: 'false' })
  const { user, card } = await seedCardholder(app, 500)
  t.equal((await authorize(app, user, card)).statusCode, 200)
  // Changed behind any cache's back.
  await app.db.query("UPDATE users SET status = 'SUSPENDED' WHERE token = $1", [user])
  const res = await authorize(app, user, card)
  t.equal(res.json().jit_funding.decline_reason, 'CARDHOLDER_NOT_ACTIVE')
  const lookups = async (name: 'cacheHits' | 'cacheMisses'): Promise<number> =>
    (await app.telemetry[name].get()).values.reduce((sum, v) => sum + v.value, 0)
  t.same([await lookups('cacheHits'), await lookups('cacheMisses')], [0, 0])
})
