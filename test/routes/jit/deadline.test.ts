import t from 'tap'
import pg from 'pg'
import { build, eventually, TEST_DATABASE_URL } from '../../helper.js'
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

t.test('PostgreSQL unreachable at the gateway: 503 at once', async (t) => {
  const app = await build(t)
  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  const dead = new pg.Pool({ connectionString: 'postgres://postgres@127.0.0.1:1/test', connectionTimeoutMillis: 2000 })
  t.teardown(() => dead.end())
  // The Database wrapper's pool is what both the context source and the ledger call use.
  const database = app.db as unknown as { pool: pg.Pool }
  const live = database.pool
  database.pool = dead
  t.teardown(() => { database.pool = live })

  const body = jitRequest({ user: ch.user, card: ch.card, amount: 1 })
  const started = performance.now()
  const res = await postJit(app, body)
  t.equal(res.statusCode, 503, res.body)
  t.match(res.json(), { statusCode: 503, error: 'Service Unavailable' })
  t.notMatch(res.body, /ECONNREFUSED|127\.0\.0\.1/, 'no internals in the answer')
  t.ok(performance.now() - started < 1000, 'without waiting for the deadline')

  database.pool = live
  t.equal(await decisionOf(app.db, body.gpa_order.jit_funding.token), undefined)
  const after = await postJit(app, body)
  t.equal(after.statusCode, 200, 'once PostgreSQL is back the same token is decided')
})
