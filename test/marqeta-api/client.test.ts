import { inspect } from 'node:util'
import { test } from 'tap'
import { MarqetaClient } from '../../src/marqeta-api/client.js'
import { loadMarqetaConfig } from '../../src/marqeta-api/config.js'
import { MarqetaApiError, MarqetaTimeoutError } from '../../src/marqeta-api/errors.js'
import { MarqetaHttp } from '../../src/marqeta-api/http.js'
import { all } from '../../src/marqeta-api/pagination.js'
import { uniq } from '../helper.js'
import { FakeMarqeta } from './fake-marqeta.js'

interface Options { timeoutMs?: number, retries?: number, adminAccessToken?: string, pageSize?: number }

function clientFor (fake: FakeMarqeta, opts: Options = {}): MarqetaClient {
  const http = new MarqetaHttp({
    baseUrl: fake.url,
    applicationToken: fake.applicationToken,
    adminAccessToken: opts.adminAccessToken ?? fake.adminAccessToken,
    timeoutMs: opts.timeoutMs ?? 2000,
    retries: opts.retries ?? 3,
    retryMinMs: 10,
    retryMaxMs: 50
  })
  return new MarqetaClient(http, opts.pageSize ?? 10)
}

test('the Marqeta client against a fake Marqeta', async (t) => {
  const fake = await FakeMarqeta.start()
  t.teardown(() => fake.close())
  const client = clientFor(fake)
  t.teardown(() => client.close())
  const callsTo = (method: string, path: string): number => fake.calls.filter((c) => c.method === method && c.path === path).length

  await t.test('reads a user with Basic auth built from the two tokens', async (t) => {
    const token = uniq('mq-user')
    fake.addUser({ token, first_name: 'Ada', status: 'SUSPENDED' })
    const user = await client.getUser(token)
    t.equal(user.token, token)
    t.equal(user.status, 'SUSPENDED')
    t.equal(user.first_name, 'Ada')
  })

  await t.test('pages through a list with count, start_index and is_more', async (t) => {
    const userToken = uniq('mq-pager')
    fake.addUser({ token: userToken })
    const tokens = Array.from({ length: 23 }, (_, i) => `${userToken}-${String(i).padStart(2, '0')}`.slice(-36))
    for (const token of tokens) fake.addCard({ token, user_token: userToken })
    const before = callsTo('GET', `/cards/user/${userToken}`)
    const cards = await all(client.listCardsForUser(userToken))
    t.same(cards.map((c) => c.token), tokens, 'every card once, in order')
    t.equal(callsTo('GET', `/cards/user/${userToken}`) - before, 3, 'three pages of 10')
  })

  await t.test('an empty list is one call and no items', async (t) => {
    t.same(await all(client.listCardsForUser(uniq('nobody'))), [])
  })

  await t.test('wrong credentials: a 401 naming error_code, not retried', async (t) => {
    const bad = clientFor(fake, { adminAccessToken: 'wrong-admin-token' })
    t.teardown(() => bad.close())
    const before = callsTo('GET', '/users/someone')
    const err = await bad.getUser('someone').catch((e: unknown) => e)
    t.ok(err instanceof MarqetaApiError)
    t.equal((err as MarqetaApiError).statusCode, 401)
    t.equal((err as MarqetaApiError).errorCode, '401001')
    t.match((err as Error).message, /GET \/users\/someone answered 401 error_code 401001: Unauthorized/)
    t.notMatch((err as Error).message, /wrong-admin-token|Basic /, 'no credential in the message')
    t.equal(callsTo('GET', '/users/someone') - before, 1, 'tried once')
  })

  await t.test('an unknown user: 404 with Marqeta\'s error_code and error_message', async (t) => {
    const err = await client.getUser('no-such-user').catch((e: unknown) => e) as MarqetaApiError
    t.ok(err instanceof MarqetaApiError)
    t.equal(err.statusCode, 404)
    t.equal(err.errorCode, '404001')
    t.equal(err.errorMessage, 'User not found')
    t.equal(err.retryable, false)
  })

  await t.test('a duplicate token: 409, not retried', async (t) => {
    const token = uniq('wh')
    const webhook = {
      token, name: 'dup', events: ['transaction.*'],
      config: { url: 'https://example.test/hook', basic_auth_username: 'u', basic_auth_password: 'Aa1!aaaaaaaaaaaaaaaaaaaa' }
    }
    await client.createWebhook(webhook)
    const before = callsTo('POST', '/webhooks')
    const err = await client.createWebhook(webhook).catch((e: unknown) => e) as MarqetaApiError
    t.equal(err.statusCode, 409)
    t.equal(err.errorCode, '409001')
    t.equal(callsTo('POST', '/webhooks') - before, 1)
  })

  await t.test('a 400 is never retried', async (t) => {
    const before = callsTo('POST', '/cardtransitions')
    // reason_code left out: Marqeta answers 400.
    const transition = { card_token: 'x', state: 'SUSPENDED', channel: 'API' } as unknown as Parameters<MarqetaClient['createCardTransition']>[0]
    const err = await client.createCardTransition(transition)
      .catch((e: unknown) => e) as MarqetaApiError
    t.equal(err.statusCode, 400)
    t.equal(err.errorCode, '400001')
    t.equal(callsTo('POST', '/cardtransitions') - before, 1)
  })

  await t.test('a 400 on an idempotent GET is not retried either', async (t) => {
    const token = uniq('mq-400')
    fake.fail('GET', `/users/${token}`, { status: 400, body: { error_code: '400001', error_message: 'bad request' } })
    const err = await client.getUser(token).catch((e: unknown) => e) as MarqetaApiError
    t.equal(err.statusCode, 400)
    t.equal(callsTo('GET', `/users/${token}`), 1)
  })

  await t.test('429 with Retry-After: waits as told, then succeeds', async (t) => {
    const token = uniq('mq-429')
    fake.addUser({ token })
    fake.fail('GET', `/users/${token}`, { status: 429, headers: { 'retry-after': '1' }, body: { error_code: '429001', error_message: 'Too many requests' } })
    const started = Date.now()
    const user = await client.getUser(token)
    t.equal(user.token, token)
    t.ok(Date.now() - started >= 1000, `waited ${Date.now() - started} ms for Retry-After: 1`)
    t.equal(callsTo('GET', `/users/${token}`), 2)
  })

  await t.test('429 is retried even for a call that is not idempotent (Marqeta did nothing)', async (t) => {
    const card = uniq('mq-sim')
    fake.addCard({ token: card, user_token: uniq('u') })
    fake.fail('POST', '/simulations/cardtransactions/authorization', { status: 429, headers: { 'retry-after': '0' } })
    const before = callsTo('POST', '/simulations/cardtransactions/authorization')
    const result = await client.simulateAuthorization({ card_token: card, amount: 1 })
    t.equal(result.transaction?.type, 'authorization')
    t.equal(callsTo('POST', '/simulations/cardtransactions/authorization') - before, 2)
  })

  await t.test('5xx twice, then success', async (t) => {
    const token = uniq('mq-5xx')
    fake.addUser({ token })
    fake.fail('GET', `/users/${token}`, { status: 503, times: 1 })
    fake.fail('GET', `/users/${token}`, { status: 500, times: 1 })
    t.equal((await client.getUser(token)).token, token)
    t.equal(callsTo('GET', `/users/${token}`), 3)
  })

  await t.test('a 5xx on a simulation (no token to dedupe) is not repeated', async (t) => {
    const card = uniq('mq-sim5')
    fake.addCard({ token: card, user_token: uniq('u') })
    fake.fail('POST', '/simulations/cardtransactions/authorization', { status: 502 })
    const before = callsTo('POST', '/simulations/cardtransactions/authorization')
    const err = await client.simulateAuthorization({ card_token: card, amount: 1 }).catch((e: unknown) => e) as MarqetaApiError
    t.equal(err.statusCode, 502)
    t.equal(callsTo('POST', '/simulations/cardtransactions/authorization') - before, 1)
  })

  await t.test('5xx every time: gives up after the configured retries', async (t) => {
    const token = uniq('mq-down')
    fake.fail('GET', `/users/${token}`, { status: 500, times: 10 })
    const err = await client.getUser(token).catch((e: unknown) => e) as MarqetaApiError
    t.equal(err.statusCode, 500)
    t.equal(callsTo('GET', `/users/${token}`), 4, 'one try and three retries')
  })

  await t.test('a slow answer times out, is retried, then reported', async (t) => {
    const quick = clientFor(fake, { timeoutMs: 150, retries: 1 })
    t.teardown(() => quick.close())
    const token = uniq('mq-slow')
    fake.addUser({ token })
    fake.fail('GET', `/users/${token}`, { delayMs: 600, times: 2 })
    const started = Date.now()
    const err = await quick.getUser(token).catch((e: unknown) => e)
    t.ok(err instanceof MarqetaTimeoutError, String(err))
    t.match((err as Error).message, /did not answer within 150 ms/)
    t.ok(Date.now() - started < 1000, 'did not wait for the slow answers')
    t.equal(callsTo('GET', `/users/${token}`), 2)
  })

  await t.test('a slow first answer, then a quick one: success', async (t) => {
    const quick = clientFor(fake, { timeoutMs: 150, retries: 2 })
    t.teardown(() => quick.close())
    const token = uniq('mq-slow1')
    fake.addUser({ token })
    fake.fail('GET', `/users/${token}`, { delayMs: 600 })
    t.equal((await quick.getUser(token)).token, token)
  })

  await t.test('nothing listening: a network error after the retries', async (t) => {
    const retries: string[] = []
    const http = new MarqetaHttp({
      baseUrl: 'http://127.0.0.1:9/v3', applicationToken: 'a', adminAccessToken: 'b', timeoutMs: 500, retries: 1, retryMinMs: 10, retryMaxMs: 20,
      onRetry: ({ method, path, attempt }) => retries.push(`${method} ${path} #${attempt}`)
    })
    const offline = new MarqetaClient(http)
    t.teardown(() => offline.close())
    const err = await offline.getUser('x').catch((e: unknown) => e) as Error
    t.equal(err.name, 'MarqetaNetworkError')
    t.match(err.message, /ECONNREFUSED/)
    t.same(retries, ['GET /users/x #2'], 'retried once, said so')
  })
})

test('the client object never shows its credentials', async (t) => {
  const http = new MarqetaHttp({ baseUrl: 'http://127.0.0.1:9/v3', applicationToken: 'app-secret-token', adminAccessToken: 'admin-secret-token', timeoutMs: 100, retries: 0, retryMinMs: 1, retryMaxMs: 1 })
  const client = new MarqetaClient(http)
  t.teardown(() => client.close())
  const shown = inspect(client, { depth: 10 }) + JSON.stringify(client)
  t.notMatch(shown, /app-secret-token|admin-secret-token/)
  t.notMatch(shown, new RegExp(Buffer.from('app-secret-token:admin-secret-token').toString('base64')))
})

test('configuration: defaults, and a bad value names its variable', async (t) => {
  const config = loadMarqetaConfig({})
  t.equal(config.MARQETA_BASE_URL, 'https://sandbox-api.marqeta.com/v3')
  t.equal(config.MARQETA_TIMEOUT_MS, 10000)
  t.throws(() => loadMarqetaConfig({ MARQETA_TIMEOUT_MS: 'soon' }), /MARQETA_TIMEOUT_MS/)
  t.throws(() => MarqetaClient.fromConfig(config), /MARQETA_APPLICATION_TOKEN and MARQETA_ADMIN_ACCESS_TOKEN must be set/)
})
