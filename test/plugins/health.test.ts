import t from 'tap'
import { build, eventually } from '../helper.js'
import { buildApp } from '../../src/app.js'
import { testConfig } from '../helper.js'

t.test('Redis, MongoDB and RabbitMQ on closed ports: the service starts degraded and stays ready', async (t) => {
  const app = await build(t, {
    REDIS_URL: 'redis://127.0.0.1:1',
    RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1',
    MONGO_URL: 'mongodb://127.0.0.1:1/x'
  })
  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 200, `the decision path (PostgreSQL) works: ${health.body}`)
  const body = health.json()
  t.equal(body.status, 'degraded')
  t.equal(body.postgres.status, 'up')
  t.match(body.postgres, { relay_backlog: Number, relay_lag_seconds: Number }, 'the event backlog, read from the cursor')
  for (const dep of ['redis', 'mongodb', 'rabbitmq']) t.equal(body[dep].status, 'down', `${dep} is down`)
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 200)
  t.same(ready.json(), { ready: true })
  const metrics = await app.inject({ url: '/metrics' })
  t.match(metrics.body, /dependency_up\{dependency="redis"\} 0/)
})

t.test('PostgreSQL unusable makes /ready 503 and /health report it down', async (t) => {
  const app = await build(t, { PG_POOL_MIN: '0', PG_POOL_MAX: '1' })
  const held = await app.db.pool.connect()
  t.teardown(() => held.release())
  const ready = await app.inject({ url: '/ready' })
  t.equal(ready.statusCode, 503)
  t.equal(ready.json().reason, 'postgres unavailable')
  const health = await app.inject({ url: '/health' })
  t.equal(health.statusCode, 503)
  t.equal(health.json().postgres.status, 'down')
})

t.test('PostgreSQL unreachable at boot fails the boot naming the URL, password redacted', async (t) => {
  await t.rejects(buildApp(testConfig({ DATABASE_URL: 'postgres://app:secret@127.0.0.1:1/x', PG_BOOT_RETRY_MS: '300' }), { logger: false }),
    { message: /PostgreSQL unavailable at postgres:\/\/app:\*\*\*@127\.0\.0\.1:1\/x/ })
})

t.test('/metrics exposes the route histogram with a sub-millisecond first bucket and process metrics', async (t) => {
  const app = await build(t)
  await app.inject({ method: 'POST', url: '/marqeta/jit', payload: {} })
  const res = await app.inject({ url: '/metrics' })
  t.equal(res.statusCode, 200)
  t.match(res.body, /http_request_duration_seconds_bucket\{le="0\.0001",method="POST",route="\/marqeta\/jit",status_code="401"\} 0/)
  t.match(res.body, /process_cpu_user_seconds_total/)
  t.match(res.body, /jit_stage_duration_seconds/)
})

t.test('errors are JSON without stack traces; authorization headers never reach the logs', async (t) => {
  const lines: string[] = []
  const app = await buildApp(testConfig({ LOG_LEVEL: 'info' }), {
    logger: { level: 'info', redact: ['req.headers.authorization'], serializers: { req: (req: any) => ({ headers: req.headers }) }, stream: { write: (l: string) => lines.push(l) } } as any
  })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'POST', url: '/marqeta/jit', headers: { authorization: 'Basic c2VjcmV0OnNlY3JldA==', 'content-type': 'application/json' }, payload: '{"x":' })
  t.equal(res.statusCode, 401)
  t.notMatch(res.body, /at .*\.js/)
  t.notMatch(lines.join('\n'), /c2VjcmV0OnNlY3JldA==/)
})

t.test('/health and /metrics report the work queues: depth, consumers, dead letters', async (t) => {
  const app = await build(t, { ROLE: 'all' })
  await eventually(async () => app.broker.connected, 20_000)
  const queues = await eventually(async () => {
    const q = (await app.inject({ url: '/health' })).json().rabbitmq?.queues
    return q?.['webhooks.process']?.consumers >= 1 ? q : undefined
  })
  t.match(queues['transactions.archive'], { messages: Number, consumers: Number, dlq: Number })
  // A sampling pass sets the queues one after the other: wait for the last line it writes.
  const metrics = await eventually(async () => {
    const body = (await app.inject({ url: '/metrics' })).body
    return /rabbitmq_queue_consumers\{queue="transactions.archive"\} \d+/.test(body) ? body : undefined
  })
  t.match(metrics, /rabbitmq_queue_consumers\{queue="webhooks.process"\} [1-9]/)
  t.match(metrics, /rabbitmq_queue_depth\{queue="transactions.archive.dlq"\} \d+/)
})
