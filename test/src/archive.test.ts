import t from 'tap'
import { MongoClient, ObjectId } from 'mongodb'
import { build, tcpProxy, uniq } from '../helper.js'
import { startEmbeddedMongo } from '../../src/embedded-mongo.js'
import { ArchiveWriter, archiveCollection, archiveDocument, archiveId, archiveMessage, eventsCollection, isMongoUnavailable } from '../../src/archive.js'
import { classifyFailure } from '../../src/failures.js'
import { webhookMessageId } from '../../src/webhooks/queue.js'
import { createCardholder, fixture, jitHold, postWebhook, withTokens } from './webhooks-helpers.js'
import { buildIsolated } from './consumer-helpers.js'

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v))

t.test('documents: tokens to find a message by, the whole payload, the time it was received', async (t) => {
  const item = fixture('webhook-clearing.json').transactions[0]
  const { collection, doc } = archiveDocument({
    routingKey: 'webhook.transactions', messageId: 'm-1', content: json(item), headers: { 'x-received-at': '2026-01-02T03:04:05.000Z' }
  })
  t.equal(collection, archiveCollection)
  t.match(doc, {
    message_id: 'm-1', routing_key: 'webhook.transactions', token: 'txn-clear-0005', jit_token: 'jit-0005', original_jit_token: 'jit-0001', card_token: 'card-ada-1', user_token: 'user-ada'
  })
  t.same(doc.received_at, new Date('2026-01-02T03:04:05.000Z'))
  t.same(doc.payload, item)
  t.same(doc._id, archiveId('m-1'), 'the id is derived from the message id')

  const incremental = fixture('jit-authorization-incremental.json')
  t.match(archiveDocument({ routingKey: 'jit.approved.pgfs.authorization.incremental', messageId: '41', content: json({ jit_token: 'jit-0002', request: incremental }) }).doc,
    { jit_token: 'jit-0002', original_jit_token: 'jit-0001' })
  const request = fixture('jit-authorization.json')
  const decision = archiveDocument({
    routingKey: 'jit.approved.pgfs.authorization',
    messageId: '42',
    content: json({ jit_token: 'jit-0001', user_token: 'user-ada', card_token: 'card-ada-1', request, response: { jit_funding: { token: 'jit-0001' } }, event_id: '42', created_at: '2026-01-02T00:00:00.000Z' })
  })
  t.equal(decision.collection, archiveCollection)
  t.match(decision.doc, { token: request.token, jit_token: 'jit-0001', user_token: 'user-ada', card_token: 'card-ada-1', payload: { request, response: {} } })
  t.same(decision.doc.received_at, new Date('2026-01-02T00:00:00.000Z'))

  const ledger = archiveDocument({ routingKey: 'ledger.hold.created', messageId: '43', content: json({ jit_token: 'jit-0001', user_token: 'user-ada' }) })
  t.equal(ledger.collection, eventsCollection)
  t.match(ledger.doc, { jit_token: 'jit-0001', user_token: 'user-ada' })

  const card = archiveDocument({ routingKey: 'webhook.cards', messageId: 'c', content: json({ token: 'ct-1', card_token: 'card-1', state: 'ACTIVE' }) })
  t.match(card.doc, { token: 'ct-1', card_token: 'card-1' })
  t.notOk('jit_token' in card.doc, 'absent tokens are left out, not null')
  t.match(archiveDocument({ routingKey: 'webhook.transactions', content: Buffer.from('{oops') }).doc.payload, { unparsable: String })
})

t.test('a message is written once however often it is delivered', async (t) => {
  const app = await build(t, { ROLE: 'api' })
  const db = app.mongo.db!
  const messageId = uniq('msg')
  const input = { routingKey: 'webhook.transactions', messageId, content: json({ token: messageId, type: 'authorization' }) }
  const results = await Promise.all([1, 2, 3].map(() => archiveMessage(db, input)))
  t.equal(results.filter((r) => r.inserted).length, 1, 'one insert, the other deliveries are duplicates')
  t.equal(await db.collection(archiveCollection).countDocuments({ message_id: messageId }), 1)
  t.equal(await db.collection(archiveCollection).countDocuments({ token: messageId }), 1)

  // The consumer's batched writer: a burst with redeliveries in it, across both collections.
  const writer = new ArchiveWriter(db, 8)
  const run = uniq('burst')
  const inputs = Array.from({ length: 20 }, (_, i) => ({
    routingKey: i % 2 === 0 ? 'webhook.transactions' : 'ledger.hold.created',
    messageId: `${run}-${i % 10}`,
    content: json({ token: `${run}-${i % 10}`, jit_token: `${run}-${i % 10}` })
  }))
  await Promise.all(inputs.map((input) => writer.write(input)))
  const messages = await db.collection(archiveCollection).countDocuments({ message_id: { $in: inputs.map((i) => i.messageId) } })
  const events = await db.collection(eventsCollection).countDocuments({ message_id: { $in: inputs.map((i) => i.messageId) } })
  t.same([messages, events], [5, 5], 'ten distinct messages, each written once, each in its collection')
  // A later redelivery of messages already archived is a success that changes nothing.
  await Promise.all(inputs.slice(0, 6).map((input) => writer.write(input)))
  t.equal(await db.collection(archiveCollection).countDocuments({ message_id: { $in: inputs.map((i) => i.messageId) } }), 5)
})

t.test('webhooks posted to the route land in MongoDB through the broker', async (t) => {
  // An exchange and queues of this app's own: its archive consumer (the workers' handler) writes to its own embedded
  // MongoDB, and the test waits until each delivery was processed instead of sleeping.
  const { app, queues, waitSettled } = await buildIsolated(t)
  const db = app.mongo.db!
  const type = uniq('archivetest').replace(/-/g, '_')

  // A real cardholder and hold: this app's webhook consumer applies the clearing too.
  const { user, card } = await createCardholder(app.db, 100_00)
  const tok = { 'txn-clear-0005': uniq('txn'), 'jit-0005': uniq('jit'), 'user-ada': user, 'card-ada-1': card, 'jit-0001': uniq('jit'), 'jit-0002': uniq('jit') }
  await jitHold(app.db, user, card, tok['jit-0001'], 52_17)
  const clearing = withTokens(fixture('webhook-clearing.json'), tok)
  const other = { token: uniq('x'), anything: [1, 2, 3] }
  for (let i = 0; i < 3; i++) t.equal((await postWebhook(app, { ...clearing, [type]: [other] })).statusCode, 200)

  await waitSettled(queues.archive, webhookMessageId('transactions', clearing.transactions[0]), 3)
  await waitSettled(queues.archive, webhookMessageId(type, other), 3)
  const doc = await db.collection(archiveCollection).findOne({ jit_token: tok['jit-0005'] })
  t.match(doc, { token: tok['txn-clear-0005'], card_token: tok['card-ada-1'], user_token: tok['user-ada'], routing_key: 'webhook.transactions' })
  t.ok(doc?.received_at instanceof Date)
  t.same(doc?.payload, clearing.transactions[0])
  t.equal(await db.collection(archiveCollection).countDocuments({ jit_token: tok['jit-0005'] }), 1, 'three deliveries, one document')
  t.equal(await db.collection(archiveCollection).countDocuments({ token: other.token }), 1, 'unknown keys are archived too')
  t.ok((await db.collection(archiveCollection).find({ user_token: tok['user-ada'] }).toArray()).length === 1, 'found by user_token')
})

t.test('a hung MongoDB write times out as a transient failure instead of holding the consumer', async (t) => {
  const mongo = await startEmbeddedMongo()
  const proxy = await tcpProxy(t, Number(new URL(mongo.url).port))
  const url = new URL(mongo.url)
  url.port = String(proxy.port)
  const client = new MongoClient(url.toString())
  t.teardown(async () => { await client.close(true); await mongo.stop() })
  const db = client.db('hung')
  await db.command({ ping: 1 })
  // The server stops answering (the proxy holds every byte): the write must give up after its bound.
  proxy.freeze()
  const writer = new ArchiveWriter(db, 8, 300)
  const started = performance.now()
  const err = await writer.write({ routingKey: 'webhook.transactions', messageId: uniq('hung'), content: json({ a: 1 }) }).then(() => undefined, (e: unknown) => e)
  t.ok(performance.now() - started < 2000, `bounded in time (${Math.round(performance.now() - started)} ms)`)
  t.match(classifyFailure(err), { transient: true, cause: 'timeout' })
  await proxy.close()
})

t.test('MongoDB unreachable is told apart from a refused document', async (t) => {
  const client = new MongoClient('mongodb://127.0.0.1:1/none', { serverSelectionTimeoutMS: 200 })
  t.teardown(() => client.close())
  const down = await client.db().collection('x').insertOne({ a: 1 }).then(() => undefined, (err: unknown) => err)
  t.ok(isMongoUnavailable(down), String(down))
  const app = await build(t, { ROLE: 'api' })
  const coll = app.mongo.db!.collection<{ _id: ObjectId }>(uniq('refused'))
  const _id = new ObjectId()
  await coll.insertOne({ _id })
  const refused = await coll.insertOne({ _id }).then(() => undefined, (err: unknown) => err)
  t.ok(refused !== undefined, 'a duplicate _id is refused')
  t.notOk(isMongoUnavailable(refused))
})
