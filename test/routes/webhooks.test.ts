import t from 'tap'
import { build, eventually, uniq, webhookHeaders } from '../helper.js'
import { buildConnected, fixture, postWebhook, tapExchange, withTokens } from '../src/webhooks-helpers.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { signBody } from '../../src/webhooks/signature.js'

const SECRET = 'whsec-test-secret'

// These apps only receive: the shared consumers of other test files' apps may process what they queue.
const receiver = { ROLE: 'api' }

t.test('a ping is queued and answered 200', async (t) => {
  const app = await buildConnected(t, receiver)
  const seen = await tapExchange(t, ['webhook.pings'])
  const ping = fixture('webhook-ping.json')
  ping.pings[0].token = uniq('ping')
  const res = await postWebhook(app, ping)
  t.equal(res.statusCode, 200)
  t.same(res.json(), { queued: 1 })
  const msg = await eventually(async () => seen.find((m) => m.body.token === ping.pings[0].token))
  t.same(msg.body, ping.pings[0])
  t.equal(msg.messageId, webhookMessageId('pings', ping.pings[0]))
})

t.test('every item of a batch is confirmed before the 200, batches over 10 and unknown keys included', async (t) => {
  const app = await buildConnected(t, receiver)
  const run = uniq('batch')
  const seen = await tapExchange(t, ['webhook.#'])
  const transactions = Array.from({ length: 12 }, (_, i) => ({ token: `${run}-${i}`, type: 'authorization', state: 'PENDING' }))
  const body = { transactions, chargebacktransitions: [{ token: `${run}-cb`, state: 'INITIATED' }], digitalwallettokentransitions: { token: `${run}-dw` } }
  const res = await postWebhook(app, body)
  t.equal(res.statusCode, 200)
  t.same(res.json(), { queued: 14 })
  const mine = await eventually(async () => {
    const found = seen.filter((m) => String(m.body.token).startsWith(run))
    return found.length >= 14 ? found : undefined
  })
  t.equal(mine.length, 14, 'each item once')
  t.same(mine.filter((m) => m.routingKey === 'webhook.transactions').map((m) => m.body.token).sort(), transactions.map((x) => x.token).sort())
  t.equal(mine.find((m) => m.body.token === `${run}-cb`)?.routingKey, 'webhook.chargebacktransitions')
  t.equal(mine.find((m) => m.body.token === `${run}-dw`)?.routingKey, 'webhook.digitalwallettokentransitions')
  t.ok(mine.every((m) => typeof m.headers['x-received-at'] === 'string'), 'each carries its reception time')
  t.ok(mine.every((m) => m.messageId?.length === 64), 'each has a sha256 message id')
})

t.test('the same item always gets the same message id', async (t) => {
  const item = fixture('webhook-clearing.json').transactions[0]
  t.equal(webhookMessageId('transactions', item), webhookMessageId('transactions', structuredClone(item)))
  t.not(webhookMessageId('transactions', item), webhookMessageId('cards', item))
})

t.test('credentials: missing or wrong Basic auth is a 401 and nothing is queued', async (t) => {
  const app = await buildConnected(t, receiver)
  const seen = await tapExchange(t, ['webhook.#'])
  const token = uniq('unauth')
  const body = JSON.stringify({ transactions: [{ token, type: 'authorization' }] })
  const none = await app.inject({ method: 'POST', url: '/marqeta/webhooks', headers: { 'content-type': 'application/json' }, payload: body })
  t.equal(none.statusCode, 401)
  const wrong = await app.inject({
    method: 'POST',
    url: '/marqeta/webhooks',
    headers: { 'content-type': 'application/json', authorization: `Basic ${Buffer.from('marqeta-webhook:not-the-password-at-all').toString('base64')}` },
    payload: body
  })
  t.equal(wrong.statusCode, 401)
  t.match(wrong.headers['www-authenticate'], /^Basic/)
  // The JIT gateway's credentials are not the webhooks' ones.
  const jitCreds = await postWebhook(app, body, { headers: { authorization: `Basic ${Buffer.from('marqeta-jit:dev-jit-password-change-me').toString('base64')}` } })
  t.equal(jitCreds.statusCode, 401)
  // A marker published afterwards: once it is seen, anything queued before it would have been seen too.
  const marker = uniq('marker')
  t.equal((await postWebhook(app, { pings: [{ token: marker }] })).statusCode, 200)
  await eventually(async () => seen.some((m) => m.body.token === marker))
  t.notOk(seen.some((m) => m.body.token === token), 'nothing queued')
})

t.test('signature: HMAC-SHA256 of the raw body, checked before parsing', async (t) => {
  const app = await buildConnected(t, { ...receiver, WEBHOOK_SECRET: SECRET })
  const seen = await tapExchange(t, ['webhook.#'])
  const token = uniq('signed')
  // Unusual spacing: the signature is over these exact bytes, not over a re-serialisation.
  const body = `{ "transactions" : [ { "token": "${token}", "type": "authorization", "amount": 10.50 } ] }`

  const missing = await postWebhook(app, body)
  t.equal(missing.statusCode, 401)
  t.equal(missing.json().code, 'INVALID_SIGNATURE')
  const wrongSecret = await postWebhook(app, body, { secret: 'another-secret' })
  t.equal(wrongSecret.statusCode, 401)
  const sha1 = await postWebhook(app, body, { secret: SECRET, algorithm: 'sha1' })
  t.equal(sha1.statusCode, 401, 'sha1 when sha256 is configured')
  const reserialised = await postWebhook(app, JSON.parse(body), { secret: SECRET })
  t.equal(reserialised.statusCode, 200, 'a signature over the bytes actually sent')
  const tampered = await app.inject({
    method: 'POST',
    url: '/marqeta/webhooks',
    headers: { ...webhookHeaders, 'x-marqeta-signature': signBody(body, SECRET), 'content-type': 'application/json' },
    payload: body.replace('10.50', '10.51')
  })
  t.equal(tampered.statusCode, 401, 'one changed byte')
  const garbage = await postWebhook(app, '{"transactions": [', { headers: { 'x-marqeta-signature': 'nope' } })
  t.equal(garbage.statusCode, 401, 'the signature is checked before the JSON is parsed')

  const ok = await postWebhook(app, body, { secret: SECRET })
  t.equal(ok.statusCode, 200)
  await eventually(async () => seen.filter((m) => m.body.token === token).length >= 2)
  t.equal(seen.filter((m) => m.body.token === token).length, 2, 'only the two correctly signed posts were queued')
})


t.test('signature: HMAC-SHA1 when configured', async (t) => {
  const app = await buildConnected(t, { ...receiver, WEBHOOK_SECRET: SECRET, WEBHOOK_SIGNATURE_ALGORITHM: 'sha1' })
  const body = JSON.stringify({ pings: [{ token: uniq('ping'), payload: 'healthcheck' }] })
  t.equal((await postWebhook(app, body, { secret: SECRET, algorithm: 'sha1' })).statusCode, 200)
  t.equal((await postWebhook(app, body, { secret: SECRET, algorithm: 'sha256' })).statusCode, 401)
})

t.test('bad bodies: malformed JSON 400, not an object 400, too large 413', async (t) => {
  const app = await buildConnected(t, receiver)
  const malformed = await postWebhook(app, '{"transactions": [')
  t.equal(malformed.statusCode, 400)
  t.match(malformed.json(), { statusCode: 400, error: 'Bad Request' })
  t.equal((await postWebhook(app, '[1, 2]')).statusCode, 400)
  t.equal((await postWebhook(app, { transactions: 'not a list' })).statusCode, 400)
  t.equal((await postWebhook(app, { transactions: [1, 2] })).statusCode, 400)
  const huge = await postWebhook(app, { transactions: [{ token: 'x', memo: 'x'.repeat(300 * 1024) }] })
  t.equal(huge.statusCode, 413)
  const empty = await app.inject({ method: 'POST', url: '/marqeta/webhooks', headers: webhookHeaders })
  t.equal(empty.statusCode, 400, 'no body')
  const textPlain = await postWebhook(app, { pings: [{ token: uniq('ping') }] }, { headers: { 'content-type': 'text/plain' } })
  t.equal(textPlain.statusCode, 200, 'JSON whatever the content type says')
})

t.test('RabbitMQ unreachable: 503 so that Marqeta retries', async (t) => {
  const app = await build(t, { RABBITMQ_URL: 'amqp://guest:guest@127.0.0.1:1' })
  const clearing = withTokens(fixture('webhook-clearing.json'), { 'txn-clear-0005': uniq('txn'), 'jit-0005': uniq('jit') })
  const res = await postWebhook(app, clearing)
  t.equal(res.statusCode, 503)
  t.match(res.json(), { statusCode: 503, error: 'Service Unavailable' })
  t.equal((await postWebhook(app, fixture('webhook-ping.json'))).statusCode, 503, 'a ping too: nothing can be queued')
})
