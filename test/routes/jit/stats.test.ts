import t from 'tap'
import { buildApp } from '../../../src/app.js'
import { jitStages } from '../../../src/metrics.js'
import { adminHeaders, testConfig } from '../../helper.js'
import { cardholder, jitRequest, postJit, untilNotUnderPressure } from '../../jit-fixtures.js'

const app = await buildApp(testConfig(), { logger: false })
t.teardown(() => app.close())
await app.ready()
await untilNotUnderPressure(app)

const stats = async () => {
  const res = await app.inject({ method: 'GET', url: '/v1/jit/stats', headers: adminHeaders })
  if (res.statusCode !== 200) throw new Error(res.body)
  return res.json()
}

t.test('GET /v1/jit/stats needs the admin bearer token', async (t) => {
  for (const headers of [{}, { authorization: 'Bearer not-the-admin-token' }, { authorization: 'Basic eDp5' }]) {
    const res = await app.inject({ method: 'GET', url: '/v1/jit/stats', headers })
    t.equal(res.statusCode, 401)
    t.match(res.json(), { statusCode: 401, error: 'Unauthorized' })
  }
})

t.test('every stage is listed before any traffic', async (t) => {
  const body = await stats()
  t.same(Object.keys(body.stages).sort(), [...jitStages, 'total'].sort())
  for (const stage of [...jitStages, 'total']) {
    t.same(body.stages[stage], { count: 0, p50_ms: null, p95_ms: null, p99_ms: null }, stage)
  }
  t.same(body.decisions, { total: 0, approved: 0, declined: 0, approval_rate: null })
  t.match(body.slow_requests, { over_warn_ms: 0, over_error_ms: 0, warn_ms: 50, error_ms: 100 })
})

t.test('after traffic: percentiles per stage, approval rate and counts; replays, 401s and informative messages are not decisions', async (t) => {
  const ch = await cardholder(app.db, { fundMinor: 1000 })
  const approved = jitRequest({ user: ch.user, card: ch.card, amount: 5 })
  t.equal((await postJit(app, approved)).statusCode, 200)
  t.equal((await postJit(app, approved)).statusCode, 200, 'a replay')
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 50 }))).statusCode, 402)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1 }), {})).statusCode, 401)
  // Informative messages are answered 200 but are not approvals.
  const capture = jitRequest({ user: ch.user, card: ch.card, amount: 5, method: 'pgfs.authorization.capture', original: approved.gpa_order.jit_funding.token })
  t.equal((await postJit(app, capture)).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method: 'pgfs.refund' }))).statusCode, 200)
  t.equal((await postJit(app, jitRequest({ user: ch.user, card: ch.card, amount: 1, method: 'pgfs.something.new' }))).statusCode, 200)

  const body = await stats()
  t.same(body.decisions, { total: 2, approved: 1, declined: 1, approval_rate: 0.5 })
  for (const stage of [...jitStages, 'total']) {
    const s = body.stages[stage]
    t.ok(s.count >= 2, `${stage} counted (${s.count})`)
    for (const q of ['p50_ms', 'p95_ms', 'p99_ms']) t.type(s[q], 'number', `${stage} ${q}`)
    t.ok(s.p50_ms <= s.p95_ms && s.p95_ms <= s.p99_ms, `${stage} percentiles are ordered`)
  }
  t.equal(body.stages.total.count, 6, 'every authenticated request is timed')
  t.ok(body.stages.total.p99_ms >= body.stages.ledger.p50_ms, 'the total covers the stages')
})

t.test('decisions by method and result in /metrics, informative messages as recorded', async (t) => {
  const values = (await app.telemetry.jitDecisions.get()).values
  const count = (method: string, result: string) => values.filter((v) => v.labels.method === method && v.labels.result === result).reduce((n, v) => n + v.value, 0)
  t.equal(count('pgfs.authorization', 'approved'), 1)
  t.equal(count('pgfs.authorization', 'declined'), 1)
  t.equal(count('pgfs.authorization.capture', 'recorded'), 1)
  t.equal(count('pgfs.refund', 'recorded'), 1)
  t.equal(count('pgfs.authorization.capture', 'approved'), 0)
})
