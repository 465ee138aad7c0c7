import t from 'tap'
import pg from 'pg'
import { readdirSync } from 'node:fs'
import { connect } from 'node:net'
import { getPriority } from 'node:os'
import { loadConfig } from '../src/config.js'
import { TEST_DATABASE_URL, eventually, jitHeaders, spawnServer, uniq, type SpawnedServer } from './helper.js'
import { cardholder, jitRequest } from './jit-fixtures.js'

// The roles of DESIGN §7 as operators run them: the built server (npm test builds first), one process per role.
const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
t.teardown(() => pool.end())

t.test('ROLE is all, api or worker (default all); WORKER_PORT defaults to 3001; a leftover RUN_WORKERS is named', async (t) => {
  const quiet = (): void => {}
  t.match(loadConfig({}, quiet), { ROLE: 'all', WORKER_PORT: 3001 })
  t.match(loadConfig({ ROLE: 'worker', WORKER_PORT: '4001' }, quiet), { ROLE: 'worker', WORKER_PORT: 4001 })
  t.throws(() => loadConfig({ ROLE: 'both' }, quiet), /invalid configuration: env\/ROLE/, 'any other role stops the boot')
  const warnings: string[] = []
  t.equal(loadConfig({ RUN_WORKERS: 'false' }, (w) => warnings.push(w)).ROLE, 'all')
  t.match(warnings.join('\n'), /RUN_WORKERS is no longer read: set ROLE=api/)
})

/** The error code of a TCP connection to `port` on loopback, or 'connected'. */
async function dial (port: number): Promise<string> {
  return await new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => { socket.destroy(); resolve('connected') })
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message))
  })
}

async function healthOf (server: SpawnedServer, port: number): Promise<any> {
  return await eventually(async () => {
    const res = await fetch(`http://127.0.0.1:${port}/health`).catch(() => undefined)
    return res?.status === 200 ? await res.json() : undefined
  }, 30_000, 100).catch((err: Error) => { throw new Error(`${err.message}: ${server.output().slice(-1000)}`) })
}

t.test('ROLE=worker serves only probes and metrics on WORKER_PORT, runs the relay, and never listens on PORT', async (t) => {
  const server = spawnServer(t, { ROLE: 'worker', LOG_LEVEL: 'info' })
  const health = await healthOf(server, server.workerPort)
  t.equal(typeof health.postgres.relay_active, 'boolean', 'the relay runs here (active, or standing by for another)')
  const base = `http://127.0.0.1:${server.workerPort}`
  t.equal((await fetch(`${base}/ready`)).status, 200)
  const metrics = await fetch(`${base}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /# TYPE \w+/, 'the metrics of this process')
  const jit = await fetch(`${base}/marqeta/jit`, { method: 'POST', headers: { ...jitHeaders, 'content-type': 'application/json' }, body: '{}' })
  t.equal(jit.status, 404, 'no JIT route')
  for (const path of ['/v1/users', '/docs/json']) t.equal((await fetch(`${base}${path}`)).status, 404, `no ${path}`)
  t.equal(await dial(server.port), 'ECONNREFUSED', 'nothing listens on PORT')
  const threads = readdirSync(`/proc/${server.pid}/task`).map(Number)
  t.ok(threads.length > 1, `${threads.length} threads`)
  t.same(threads.map((tid) => getPriority(tid)), threads.map(() => Math.min(getPriority() + 10, 19)), 'background work yields the CPU: every thread niced by 10')
  server.kill('SIGTERM')
  t.equal(await server.exited, 0, 'clean exit')
})

t.test('ROLE=api answers /marqeta/jit and runs no relay', async (t) => {
  const server = spawnServer(t, { ROLE: 'api', LOG_LEVEL: 'info' })
  const health = await healthOf(server, server.port)
  t.notOk('relay_active' in health.postgres, 'no relay in this process: /health reports the lag from the cursor alone')
  t.equal(typeof health.postgres.relay_backlog, 'number')
  const ch = await cardholder(pool, { fundMinor: 1000 })
  const answer = await fetch(`http://127.0.0.1:${server.port}/marqeta/jit`, {
    method: 'POST',
    headers: { ...jitHeaders, 'content-type': 'application/json' },
    body: JSON.stringify(jitRequest({ user: ch.user, card: ch.card, token: uniq('role-api'), amount: '1.00' }))
  })
  t.equal(answer.status, 200, 'approved')
  t.equal(await dial(server.workerPort), 'ECONNREFUSED', 'nothing listens on WORKER_PORT')
  t.notMatch(server.output(), /event relay active/, 'the relay never started')
  t.equal(getPriority(server.pid), getPriority(), 'the request path keeps its priority')
  server.kill('SIGTERM')
  t.equal(await server.exited, 0, 'clean exit')
})
