import t from 'tap'
import http from 'node:http'
import pg from 'pg'
import { MongoClient } from 'mongodb'
import { archiveMessage } from '../../src/archive.js'
import { TEST_DATABASE_URL, adminHeaders, build, eventually, inWaves, jitHeaders, spawnServer, testConfig, uniq } from '../helper.js'
import { cardholder, jitRequest } from '../jit-fixtures.js'

const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
t.teardown(() => pool.end())

t.test('two instances on one database: no overdraft and no double effect across them', async (t) => {
  // The deadline is made irrelevant, not tolerated: its maximum, and at most 10 requests queue on the account's row
  // lock at a time (each decided in milliseconds), so every count below is exact and a deadline decline fails.
  const a = await build(t, { JIT_DEADLINE_MS: '2900' })
  const b = await build(t, { JIT_DEADLINE_MS: '2900' })
  const user = uniq('clu-u')
  const card = uniq('clu-c')
  await a.db.query('INSERT INTO users (token) VALUES ($1)', [user])
  await a.db.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  await a.db.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: 'USD', amount_minor: 5000, forced: true }])
  const body = (token: string) => ({ type: 'authorization', token: uniq('t'), card_token: card, currency_code: 'USD', gpa_order: { jit_funding: { token, method: 'pgfs.authorization', user_token: user, amount: '1.00' } } })
  const post = (i: number, token: string) => (i % 2 === 0 ? a : b).inject({ method: 'POST', url: '/marqeta/jit', headers: jitHeaders, payload: body(token) })

  // One token sent 20 times at once, half to each instance, while there is money: one approval, one hold.
  const shared = uniq('clu-dup')
  const copies = await Promise.all(Array.from({ length: 20 }, (_v, i) => post(i, shared)))
  t.same([...new Set(copies.map((r) => `${r.statusCode} ${r.body}`))].map((x) => x.slice(0, 3)), ['200'], 'every copy got the same approval')
  const dupHolds = await a.db.query('SELECT count(*)::int AS n, sum(amount)::int AS amount FROM hold_states WHERE jit_token = $1', [shared])
  t.same(dupHolds.rows[0], { n: 1, amount: 100 }, 'the token copied across both instances held once')

  // 100 new tokens for the 49.00 left, 10 at a time, alternating instances.
  const answers = await inWaves(100, 10, (i) => post(i, uniq('clu-j')))
  const approved = answers.filter((r) => r.statusCode === 200).length
  const declines = answers.filter((r) => r.statusCode === 402).map((r) => r.json().jit_funding)
  t.equal(approved + declines.length, 100, 'every request got an approve or a decline')
  t.same(declines.filter((j) => j.decline_reason !== 'INSUFFICIENT_FUNDS').map((j) => `${j.decline_reason}: ${j.memo}`), [], 'declined only for funds')
  t.equal(approved, 49, 'exactly the funds are approved')

  const { rows } = await a.db.query(`SELECT credits_posted - debits_posted - debits_pending AS available,
      (SELECT count(*)::int FROM hold_states WHERE user_token = $1) AS holds FROM accounts WHERE user_token = $1`, [user])
  t.equal(Number(rows[0].available), 0, 'available is exactly the funds minus the approvals')
  t.equal(rows[0].holds, 50, 'one hold per approval, nothing twice')
})

t.test('WORKERS=2 with ROLE=all runs two api processes and one worker, replaces a dead child with its role, and stops on SIGTERM', async (t) => {
  const server = spawnServer(t, { WORKERS: '2', ROLE: 'all', LOG_LEVEL: 'info' })
  const output = server.output
  // Every pid that logged listening on `port`, in the order they did.
  const listening = (port: number): number[] => [...new Set([...output().matchAll(new RegExp(`"pid":(\\d+)[^\\n]*Server listening at http://127\\.0\\.0\\.1:${port}"`, 'g'))].map((m) => Number(m[1])))]
  await eventually(async () => listening(server.port).length >= 2 && listening(server.workerPort).length >= 1, 30_000, 50)
    .catch(() => t.fail(`the processes did not all listen: ${output().slice(-1000)}`))
  t.match(output(), /starting 2 api and 1 worker processes/)
  const apis = listening(server.port)
  const [worker] = listening(server.workerPort)
  t.equal(apis.length, 2, 'two api processes listen on the same PORT')
  t.equal(listening(server.workerPort).length, 1, 'one worker process listens on WORKER_PORT')
  t.notOk(apis.includes(worker), 'the worker is none of the api processes')
  // Ready once both api processes' pools and stores answer (one that just booted on a loaded machine may still be
  // connecting); the wait is on the condition, bounded.
  const status = await eventually(async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/ready`)
    return res.status === 200 ? res.status : undefined
  }, 15_000, 200).catch(() => 503)
  t.equal(status, 200, 'the cluster answers')
  const health = await (await fetch(`http://127.0.0.1:${server.workerPort}/health`)).json()
  t.equal(typeof health.postgres.relay_active, 'boolean', 'the relay runs in the worker process')
  t.equal((await fetch(`http://127.0.0.1:${server.workerPort}/v1/users`)).status, 404, 'the worker serves no public route')

  process.kill(worker, 'SIGKILL')
  await eventually(async () => listening(server.workerPort).length === 2, 30_000, 50)
    .catch(() => t.fail(`no new worker process: ${output().slice(-1000)}`))
  t.match(output(), new RegExp(`worker process ${worker} exited \\(SIGKILL\\); starting another`))
  t.same(listening(server.port), apis, 'the api processes were left alone')
  t.ok(await eventually(async () => (await fetch(`http://127.0.0.1:${server.workerPort}/ready`)).status === 200, 15_000, 100).catch(() => false),
    'the new worker answers on WORKER_PORT')

  server.kill('SIGTERM')
  const code = await server.exited
  t.equal(code, 0, `clean exit (${output().slice(-300)})`)
})

t.test('WORKERS=2 with the embedded MongoDB: every api process reads the one archive the primary runs', async (t) => {
  const server = spawnServer(t, { WORKERS: '2', MONGO_URL: 'embedded', LOG_LEVEL: 'info' })
  const listening = (): number => new Set([...server.output().matchAll(/"pid":(\d+)[^\n]*Server listening/g)].map((m) => m[1])).size
  for (let i = 0; i < 600 && listening() < 2; i++) await new Promise((resolve) => setTimeout(resolve, 50))
  const url = /embedded MongoDB for the cluster at (\S+)/.exec(server.output())?.[1]
  t.ok(url, 'the primary started one embedded MongoDB and named it')
  if (url === undefined) return
  // Both api processes ready (their stores connected, no boot-time pressure) before the requests that must reach either.
  await eventually(async () => (await fetch(`http://127.0.0.1:${server.port}/ready`).catch(() => undefined))?.status === 200, 20_000, 100)

  // A decision in the shared ledger, and its message archived in the primary's MongoDB.
  const ch = await cardholder(pool, { fundMinor: 1000 })
  const jitToken = uniq('clu-arch')
  const answer = await fetch(`http://127.0.0.1:${server.port}/marqeta/jit`, {
    method: 'POST', headers: { ...jitHeaders, 'content-type': 'application/json' }, body: JSON.stringify(jitRequest({ user: ch.user, card: ch.card, token: jitToken, amount: '1.00' }))
  })
  t.equal(answer.status, 200)
  const mongo = new MongoClient(url)
  t.teardown(() => mongo.close(true))
  await archiveMessage(mongo.db(testConfig().MONGO_DB), { routingKey: 'jit.approved.pgfs.authorization', messageId: jitToken, content: Buffer.from(JSON.stringify({ jit_token: jitToken })) })

  // A new connection per request: the primary hands each to the next api process in turn.
  const details = await Promise.all(Array.from({ length: 8 }, async () => {
    const body = await new Promise<string>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port: server.port, path: `/v1/transactions/${jitToken}`, headers: adminHeaders, agent: false }, (res) => {
        let text = ''
        res.on('data', (d) => { text += d })
        res.on('end', () => resolve(text))
      }).on('error', reject)
    })
    return JSON.parse(body) as { archive_status: string, archived?: Array<{ message_id: string }> }
  }))
  t.same(details.map((d) => [d.archive_status, d.archived?.map((m) => m.message_id)]), Array(8).fill(['available', [jitToken]]),
    `every answer, whichever process gave it, has the archived message (${JSON.stringify(details).slice(0, 400)})`)
  server.kill('SIGTERM')
  t.equal(await server.exited, 0, 'the primary exits once its processes and the embedded MongoDB have stopped')
})
