import t from 'tap'
import pg from 'pg'
import { TEST_DATABASE_URL, jitHeaders, spawnServer, uniq } from './helper.js'

// Runs the built server (npm test builds first), as operators do.
t.test('SIGTERM during a slow request lets it finish, then the process exits 0', async (t) => {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => pool.end())
  const user = uniq('sig-u')
  const card = uniq('sig-c')
  await pool.query('INSERT INTO users (token) VALUES ($1)', [user])
  await pool.query('INSERT INTO cards (token, user_token) VALUES ($1, $2)', [card, user])
  await pool.query('SELECT ledger_apply($1::jsonb)', [{ kind: 'credit', effect_key: uniq('load'), user_token: user, currency_code: 'USD', amount_minor: 5000, forced: true }])

  const server = spawnServer(t, { LOG_LEVEL: 'warn', JIT_DEADLINE_MS: '2500' })
  const { port } = server
  for (let i = 0; ; i++) {
    const up = await fetch(`http://127.0.0.1:${port}/ready`).then((r) => r.ok, () => false)
    if (up) break
    if (i > 100) throw new Error(`server did not start: ${server.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  // Hold the account's row lock so that the authorization waits inside the database.
  const locker = await pool.connect()
  await locker.query('BEGIN')
  await locker.query('SELECT 1 FROM accounts WHERE user_token = $1 FOR UPDATE', [user])
  const jitToken = uniq('sig-j')
  const request = fetch(`http://127.0.0.1:${port}/marqeta/jit`, {
    method: 'POST',
    headers: { ...jitHeaders, 'content-type': 'application/json' },
    body: JSON.stringify({ token: uniq('t'), card_token: card, currency_code: 'USD', gpa_order: { jit_funding: { token: jitToken, method: 'pgfs.authorization', user_token: user, amount: '10.00' } } })
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  server.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 300))
  await locker.query('COMMIT')
  locker.release()

  const response = await request
  t.equal(response.status, 200, 'the in-flight authorization was answered')
  t.match(await response.json(), { jit_funding: { token: jitToken, amount: 10 } })
  const code = await server.exited
  t.equal(code, 0, `exit code 0 (${server.output().slice(-500)})`)
  const { rows } = await pool.query('SELECT status FROM hold_states WHERE jit_token = $1', [jitToken])
  t.same(rows, [{ status: 'PENDING' }], 'its hold is committed')
})
