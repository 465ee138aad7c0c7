import t from 'tap'
import pg from 'pg'
import { MongoClient } from 'mongodb'
import { TEST_DATABASE_URL, eventually, tcpProxy, uniq } from '../helper.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { archiveCollection } from '../../src/archive.js'
import { startEmbeddedMongo } from '../../src/embedded-mongo.js'
import { balances, createCardholder, holdOf, jitHold, postWebhook } from './webhooks-helpers.js'
import { buildIsolated, counterValue, queueDepth } from './consumer-helpers.js'

// How long each store stays down. The incident was 20 s; a shorter cut takes the same paths (pause, probes, retries
// past MAX_RETRIES) in less of the shared machine's time.
const OUTAGE_MS = Number(process.env.CONSUMER_OUTAGE_MS ?? 6000)

t.test('a clearing webhook accepted while PostgreSQL is down is applied once it is back, never dead-lettered', async (t) => {
  const pgPort = Number(new URL(TEST_DATABASE_URL).port || 5432)
  const proxy = await tcpProxy(t, pgPort)
  const proxied = new URL(TEST_DATABASE_URL)
  proxied.port = String(proxy.port)
  const { app, queues, settled, waitSettled } = await buildIsolated(t, { DATABASE_URL: proxied.toString(), RABBITMQ_RETRY_DELAY_MS: '100' })
  // The test's own view of the ledger does not go through the proxy.
  const direct = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => direct.end())

  const { user, card } = await createCardholder(direct, 100_00)
  const auth = uniq('jit')
  await jitHold(direct, user, card, auth, 40_00)
  const clearingJit = uniq('jit')
  const clearing = {
    type: 'authorization.clearing', state: 'COMPLETION', token: uniq('txn'), user_token: user, card_token: card, amount: 35, currency_code: 'USD',
    gpa_order: { jit_funding: { token: clearingJit, method: 'pgfs.authorization.clearing', user_token: user, amount: 35, original_jit_funding_token: auth } }
  }
  const messageId = webhookMessageId('transactions', clearing)

  await proxy.cut()
  const cutAt = Date.now()
  const accepted = await postWebhook(app, { transactions: [clearing] })
  t.equal(accepted.statusCode, 200, `accepted: queued while PostgreSQL is down (${accepted.body})`)
  await eventually(async () => app.broker.pausedQueues.includes(queues.webhooks), 15_000)
  t.ok(await counterValue(app.telemetry.consumerRetries, { queue: queues.webhooks, cause: 'postgres' }) >= 1, 'the retry is counted under postgres')
  t.equal(await counterValue(app.telemetry.consumerPaused, { queue: queues.webhooks }), 1, 'the pause is exposed')

  // The outage lasts; the message keeps waiting, its tries untouched, and consumption stays paused (no spinning).
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, OUTAGE_MS - (Date.now() - cutAt))))
  const tries = (): typeof settled => settled.filter((s) => s.queue === queues.webhooks && s.messageId === messageId)
  const attemptsWhileDown = tries().length
  t.ok(attemptsWhileDown >= 1 && attemptsWhileDown <= 12, `a handful of tries during the outage, not a spin (${attemptsWhileDown})`)
  t.ok(tries().every((s) => s.outcome === 'retried' && s.failure?.transient === true), 'every failure was transient')
  t.match(await holdOf(direct, auth), { status: 'PENDING', remaining: 40_00 }, 'nothing applied while down')

  await proxy.restore()
  const restoredAt = Date.now()
  await waitSettled(queues.webhooks, messageId, 1, 'acked', 60_000)
  t.comment(`applied ${Date.now() - restoredAt} ms after PostgreSQL came back (outage ${OUTAGE_MS} ms, ${attemptsWhileDown} tries while down)`)
  t.match(await holdOf(direct, auth), { status: 'POSTED', posted: 35_00, remaining: 0 })
  t.same(await balances(direct, user), { available: 65_00, ledger: 65_00, pending: 0, debitsPosted: 35_00, creditsPosted: 100_00 })
  const { rows } = await direct.query('SELECT count(*)::int AS n FROM transfers WHERE id = $1', [`${clearingJit}:post`])
  t.equal(rows[0].n, 1, 'one effect')
  t.equal(await queueDepth(`${queues.webhooks}.dlq`), 0, 'nothing dead-lettered')
  t.equal(await counterValue(app.telemetry.consumerDeadLetters, { queue: queues.webhooks }), 0)
  t.equal(await counterValue(app.telemetry.consumerRetries, { queue: queues.webhooks, cause: 'permanent' }), 0, 'no try was used up')
  await eventually(async () => !app.broker.pausedQueues.includes(queues.webhooks))
  t.equal(await counterValue(app.telemetry.consumerPaused, { queue: queues.webhooks }), 0)

  // Marqeta's retry of the same webhook, now that everything is up: processed, and changes nothing.
  t.equal((await postWebhook(app, { transactions: [clearing] })).statusCode, 200)
  await waitSettled(queues.webhooks, messageId, 2)
  t.same((await balances(direct, user)).available, 65_00, 'applied exactly once')
})

t.test('an archive write while MongoDB is unreachable waits and lands once it is back', async (t) => {
  const mongo = await startEmbeddedMongo()
  const direct = new MongoClient(mongo.url)
  // Teardowns run last registered first: the app, then the proxy, then this server and the test's own client.
  t.teardown(async () => { await direct.close(true); await mongo.stop() })
  const proxy = await tcpProxy(t, Number(new URL(mongo.url).port))
  const proxied = new URL(mongo.url)
  proxied.port = String(proxy.port)
  const { app, queues, settled, waitSettled } = await buildIsolated(t, { MONGO_URL: proxied.toString(), RABBITMQ_RETRY_DELAY_MS: '100' })
  const archived = direct.db(app.config.MONGO_DB).collection(archiveCollection)

  const type = uniq('archived').replace(/-/g, '_')
  const item = { token: uniq('item'), note: 'archived while MongoDB was down' }
  const messageId = webhookMessageId(type, item)
  await proxy.cut()
  t.equal((await postWebhook(app, { [type]: [item] })).statusCode, 200)
  await eventually(async () => app.broker.pausedQueues.includes(queues.archive), 15_000)
  t.ok(await counterValue(app.telemetry.consumerRetries, { queue: queues.archive, cause: 'mongodb' }) +
    await counterValue(app.telemetry.consumerRetries, { queue: queues.archive, cause: 'timeout' }) >= 1, 'the retry is counted under mongodb (or timeout)')
  await new Promise((resolve) => setTimeout(resolve, OUTAGE_MS / 2))
  t.equal(await archived.countDocuments({ token: item.token }), 0, 'not archived while down')

  await proxy.restore()
  await waitSettled(queues.archive, messageId, 1, 'acked', 60_000)
  t.equal(await archived.countDocuments({ token: item.token }), 1, 'archived once')
  t.equal(await queueDepth(`${queues.archive}.dlq`), 0, 'nothing dead-lettered')
  t.notOk(settled.some((s) => s.messageId === messageId && s.outcome === 'dead-lettered'))
  t.equal(await counterValue(app.telemetry.consumerRetries, { queue: queues.archive, cause: 'permanent' }), 0)
})
