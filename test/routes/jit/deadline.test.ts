import t from 'tap'
import pg from 'pg'
import { build, eventually, tcpProxy, TEST_DATABASE_URL } from '../../helper.js'
import { account, cardholder, decisionOf, holdCount, jitRequest, postJit } from '../../jit-fixtures.js'

t.test('past JIT_DEADLINE_MS (a row lock held elsewhere): 402 with a memo, in time, nothing held', async (t) => {
  const app = await build(t, { JIT_DEADLINE_MS: '300' })
  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  const locker = new pg.Client({ connectionString: TEST_DATABASE_URL })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('BEGIN')
  await locker.query('SELECT id FROM accounts WHERE user_token = $1 FOR UPDATE', [ch.user])

  const body = jitRequest({ user: ch.user, card: ch.card, amount: '12.34' })
  const started = performance.now()
  const res = await postJit(app, body)
  const elapsed = performance.now() - started
  t.equal(res.statusCode, 402, res.body)
  t.ok(elapsed >= 250 && elapsed < 1000, `answered at the deadline (${Math.round(elapsed)} ms)`)
  const jit = res.json().jit_funding
  t.match(jit, { token: body.gpa_order.jit_funding.token, method: 'pgfs.authorization', user_token: ch.user, amount: 12.34 })
  t.type(jit.decline_reason, 'string')
  t.match(jit.memo, /deadline/)
  t.equal(await holdCount(app.db, ch.user), 0, 'no hold')

  // The decline is recorded (off the answer's path) as the token's decision, so a replay cannot hold money later.
  const decision = await eventually(() => decisionOf(app.db, body.gpa_order.jit_funding.token), 2000)
  t.match(decision, { result: 'declined', status_code: 402, response: res.body })

  await locker.query('ROLLBACK')
  const replay = await postJit(app, body)
  t.equal(replay.statusCode, 402)
  t.equal(replay.body, res.body, 'a replay after the lock is gone gets the same decline')
  t.equal(await holdCount(app.db, ch.user), 0)
  t.same(await account(app.db, ch.user), { credits_posted: 10_000, debits_posted: 0, debits_pending: 0, available: 10_000 })

  const next = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: '12.34' }))
  t.equal(next.statusCode, 200, 'a new token is decided normally')
})

t.test('PostgreSQL unreachable at the ledger call (context already cached): 503 at once, nothing recorded', async (t) => {
  const target = new URL(TEST_DATABASE_URL)
  const proxy = await tcpProxy(t, Number(target.port || 5432), target.hostname)
  const proxied = new URL(target.href)
  proxied.host = `127.0.0.1:${proxy.port}`
  // The context stays in the local level for the whole test, so the request gets past context and rules to the ledger.
  const app = await build(t, { DATABASE_URL: proxied.href, ROLE: 'api', CACHE_LOCAL_TTL_MS: '600000' })
  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  const warm = await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }))
  t.equal(warm.statusCode, 200, 'a first decision loads and caches the context')
  const before = await account(app.db, ch.user)

  // Every open connection is reset and new ones are reset as they arrive, as when the database host goes away.
  proxy.reset()
  const stages = async () => (await app.profiler.snapshot()).stages
  // First on a pooled connection that was just dropped, then on a new connection that is refused.
  const bodies = [jitRequest({ user: ch.user, card: ch.card, amount: 1 }), jitRequest({ user: ch.user, card: ch.card, amount: 1 })]
  for (const [i, body] of bodies.entries()) {
    const stagesBefore = await stages()
    const started = performance.now()
    const res = await postJit(app, body)
    const elapsed = performance.now() - started
    t.equal(res.statusCode, 503, res.body)
    t.match(res.json(), { statusCode: 503, error: 'Service Unavailable' })
    t.notMatch(res.body, /ECONNRESET|ECONNREFUSED|127\.0\.0\.1|terminated/, 'no internals in the answer')
    t.ok(elapsed < 1000, `without waiting for the deadline (${Math.round(elapsed)} ms)`)
    // Where it failed: the context came from the cache and the rules ran (their stages were timed), then the ledger
    // call tried PostgreSQL and found it gone.
    const stagesAfter = await stages()
    t.equal(stagesAfter.context.count, stagesBefore.context.count + 1, 'the context was loaded (from the cache)')
    t.equal(stagesAfter.rules.count, stagesBefore.rules.count + 1, 'the rules ran: the request reached the ledger call')
    t.equal(stagesAfter.ledger.count, stagesBefore.ledger.count, 'and the ledger call did not complete')
    if (i === 1) t.ok(proxy.resetAttempts() > 0, `the ledger call tried a new connection (${proxy.resetAttempts()} attempts refused)`)
  }

  await proxy.restore()
  for (const body of bodies) t.equal(await decisionOf(app.db, body.gpa_order.jit_funding.token), undefined, 'no decision recorded')
  t.same(await account(app.db, ch.user), before, 'nothing held')
  t.equal(await holdCount(app.db, ch.user), 1, 'only the first decision holds money')
  const after = await postJit(app, bodies[0])
  t.equal(after.statusCode, 200, 'once PostgreSQL is back the same token is decided')
  t.equal(await holdCount(app.db, ch.user), 2)
})
