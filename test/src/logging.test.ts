import t from 'tap'
import { createHmac } from 'node:crypto'
import { buildApp } from '../../src/app.js'
import { TEST_DATABASE_URL, testConfig, uniq } from '../helper.js'
import { cardholder, jitRequest, untilNotUnderPressure } from '../jit-fixtures.js'

// Production-like secrets, each distinct, so that a leak of any one is visible in the captured text.
const secrets = {
  ADMIN_TOKEN: 'admin-token-Zq81kXv0Lr2Nw5Ty',
  JIT_BASIC_AUTH_USER: 'jit-user-e4',
  JIT_BASIC_AUTH_PASSWORD: 'jit-password-Hm27cPq9Ws1Dk',
  WEBHOOK_BASIC_AUTH_USER: 'webhook-user-r7',
  WEBHOOK_BASIC_AUTH_PASSWORD: 'webhook-password-Yt63bNe0Ju8',
  WEBHOOK_SECRET: 'webhook-hmac-secret-Fs92Lw',
  JIT_CUSTOM_HEADER_NAME: 'X-Program-Key',
  JIT_CUSTOM_HEADER_VALUE: 'custom-header-value-Gk47Qz',
  // The test database trusts local connections: the password is never checked, only carried.
  DATABASE_URL: TEST_DATABASE_URL.replace('postgres://postgres@', 'postgres://postgres:pg-password-Vb58Rn@')
}
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`

t.test('the service logger keeps every configured secret out of the logs, request lines included', async (t) => {
  const lines: string[] = []
  const app = await buildApp(testConfig({ ...secrets, LOG_LEVEL: 'info', ROLE: 'api' }), { logStream: { write: (l) => { lines.push(l) } } })
  t.teardown(() => app.close())
  await app.ready()

  const ch = await cardholder(app.db, { fundMinor: 10_000 })
  const jit = await app.inject({
    method: 'POST',
    url: '/marqeta/jit',
    headers: { authorization: basic(secrets.JIT_BASIC_AUTH_USER, secrets.JIT_BASIC_AUTH_PASSWORD), 'x-program-key': secrets.JIT_CUSTOM_HEADER_VALUE },
    payload: jitRequest({ user: ch.user, card: ch.card, amount: '1.00' })
  })
  t.equal(jit.statusCode, 200, jit.body)

  const webhookBody = JSON.stringify({ pings: [{ token: 'marqeta', payload: 'healthcheck' }] })
  const signature = createHmac('sha256', secrets.WEBHOOK_SECRET).update(webhookBody).digest('hex')
  const cookie = `session=cookie-${uniq('value')}`
  // Routes other than the JIT one answer 503 while the process is under pressure (a loaded test machine).
  await untilNotUnderPressure(app)
  const webhook = await app.inject({
    method: 'POST',
    url: '/marqeta/webhooks',
    headers: {
      authorization: basic(secrets.WEBHOOK_BASIC_AUTH_USER, secrets.WEBHOOK_BASIC_AUTH_PASSWORD),
      'x-marqeta-signature': signature,
      'content-type': 'application/json',
      cookie
    },
    payload: webhookBody
  })
  t.equal(webhook.statusCode, 200, webhook.body)

  await untilNotUnderPressure(app)
  const admin = await app.inject({ url: `/v1/users/${uniq('nobody')}`, headers: { authorization: `Bearer ${secrets.ADMIN_TOKEN}` } })
  t.equal(admin.statusCode, 404)
  // A secret where no path can name it: in a URL (a misconfigured caller), and in a proxy header.
  await untilNotUnderPressure(app)
  const misplaced = await app.inject({
    url: `/v1/transactions?key=${secrets.JIT_CUSTOM_HEADER_VALUE}&pw=${secrets.JIT_BASIC_AUTH_PASSWORD}`,
    headers: { 'proxy-authorization': basic('proxy', 'proxy-password-Ux31'), 'x-forwarded-user': secrets.ADMIN_TOKEN }
  })
  t.equal(misplaced.statusCode, 401)

  const text = lines.join('')
  // The request lines are there, with their headers: redaction hides values, not the lines.
  for (const url of ['/marqeta/jit', '/marqeta/webhooks', '/v1/users/']) t.match(text, `"url":"${url}`, `request line for ${url}`)
  t.match(text, /"x-program-key":"\[redacted\]"/)
  t.match(text, /"x-marqeta-signature":"\[redacted\]"/)
  t.match(text, /"cookie":"\[redacted\]"/)
  t.match(text, /"authorization":"\[redacted\]"/)
  const leaks = [
    secrets.ADMIN_TOKEN, secrets.JIT_BASIC_AUTH_PASSWORD, secrets.WEBHOOK_BASIC_AUTH_PASSWORD, secrets.WEBHOOK_SECRET,
    secrets.JIT_CUSTOM_HEADER_VALUE, 'pg-password-Vb58Rn', signature, cookie,
    basic(secrets.JIT_BASIC_AUTH_USER, secrets.JIT_BASIC_AUTH_PASSWORD).slice(6),
    basic(secrets.WEBHOOK_BASIC_AUTH_USER, secrets.WEBHOOK_BASIC_AUTH_PASSWORD).slice(6),
    basic('proxy', 'proxy-password-Ux31').slice(6)
  ]
  for (const secret of leaks) t.notOk(text.includes(secret), `not logged: ${secret.slice(0, 6)}…`)
})

t.test('a mixed-case custom header name is redacted under its lowercase name', async (t) => {
  const lines: string[] = []
  const app = await buildApp(testConfig({ ...secrets, JIT_CUSTOM_HEADER_NAME: 'X-MiXeD-Key', LOG_LEVEL: 'info', ROLE: 'api' }),
    { logStream: { write: (l) => { lines.push(l) } } })
  t.teardown(() => app.close())
  await app.ready()
  // Wrong credentials, right custom header: the request line is logged all the same.
  const res = await app.inject({ method: 'POST', url: '/marqeta/jit', headers: { 'x-mixed-key': secrets.JIT_CUSTOM_HEADER_VALUE }, payload: {} })
  t.equal(res.statusCode, 401)
  const text = lines.join('')
  t.match(text, /"x-mixed-key":"\[redacted\]"/)
  t.notOk(text.includes(secrets.JIT_CUSTOM_HEADER_VALUE))
})

t.test('a header name that is not an HTTP token is refused at boot', async (t) => {
  t.throws(() => testConfig({ JIT_CUSTOM_HEADER_NAME: 'x"]y', JIT_CUSTOM_HEADER_VALUE: 'v' }), { message: /JIT_CUSTOM_HEADER_NAME/ })
})
