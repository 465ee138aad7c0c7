import t from 'tap'
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import pg from 'pg'
import { MongoClient } from 'mongodb'
import { archiveMessage } from '../../src/archive.js'
import { startEmbeddedMongo } from '../../src/embedded-mongo.js'
import { TEST_DATABASE_URL, adminHeaders, eventually, jitHeaders, spawnServer, testConfig, uniq, type SpawnedServer, type Teardown } from '../helper.js'
import { cardholder, jitRequest } from '../jit-fixtures.js'

async function tempPath (t: Teardown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'embedded-mongo-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  return join(dir, 'nested', 'archive.json')
}

/** Runs `use` on a client of the embedded server at `url`, closed before the server stops (its monitor would linger). */
async function withClient<T> (url: string, use: (client: MongoClient) => Promise<T>): Promise<T> {
  const client = new MongoClient(url, { serverSelectionTimeoutMS: 2000 })
  try {
    return await use(client)
  } finally {
    await client.close(true)
  }
}

t.test('a graceful stop keeps the documents, their types and the indexes for the next start', async (t) => {
  const path = await tempPath(t)
  const at = new Date('2026-01-15T10:00:00.123Z')
  const first = await startEmbeddedMongo({ path, persistIntervalMs: 60_000 })
  await withClient(first.url, async (client) => {
    const messages = client.db('keep').collection('messages')
    await messages.createIndex({ jit_token: 1 })
    await messages.insertOne({ jit_token: 'jit-keep', received_at: at, payload: { amount: 12.5, tags: ['a'] } })
  })
  await first.stop()

  const second = await startEmbeddedMongo({ path, persistIntervalMs: 60_000 })
  t.teardown(() => second.stop())
  await withClient(second.url, async (client) => {
    const messages = client.db('keep').collection('messages')
    const doc = await messages.findOne({ jit_token: 'jit-keep' })
    t.ok(doc?.received_at instanceof Date, 'a Date comes back a Date')
    t.equal((doc?.received_at as Date).toISOString(), at.toISOString())
    t.same(doc?.payload, { amount: 12.5, tags: ['a'] })
    t.same((await messages.indexes()).map((i) => i.name).sort(), ['_id_', 'jit_token_1'])
  })
})

t.test('written on the interval while running: a killed process loses at most its last interval', async (t) => {
  const path = await tempPath(t)
  const running = await startEmbeddedMongo({ path, persistIntervalMs: 100 })
  t.teardown(() => running.stop())
  await withClient(running.url, async (client) => { await client.db('kill').collection('m').insertOne({ token: 'written-while-running' }) })
  await eventually(async () => (await readFile(path, 'utf8').catch(() => '')).includes('written-while-running'), 5000)

  // What a new process finds after a kill: the file as the last interval left it (a copy: the running one keeps writing).
  const copy = `${path}.after-kill`
  await copyFile(path, copy)
  const restarted = await startEmbeddedMongo({ path: copy, persistIntervalMs: 60_000 })
  t.teardown(() => restarted.stop())
  const found = await withClient(restarted.url, async (client) => await client.db('kill').collection('m').findOne({ token: 'written-while-running' }))
  t.ok(found, 'the document written before the last interval is there')
})

t.test('an empty path keeps everything in memory only: a restart starts empty', async (t) => {
  const first = await startEmbeddedMongo({ path: '' })
  await withClient(first.url, async (client) => { await client.db('memory').collection('m').insertOne({ token: 'gone' }) })
  await first.stop()
  const second = await startEmbeddedMongo({ path: '' })
  t.teardown(() => second.stop())
  t.equal(await withClient(second.url, async (client) => await client.db('memory').collection('m').countDocuments({})), 0)
})

t.test('an unreadable snapshot stops the start and is left as it was, never replaced by an empty one', async (t) => {
  const path = join(dirname(await tempPath(t)), '..', 'truncated.json')
  await writeFile(path, '{"keep":{"m":{"documents":[{"tok')
  await t.rejects(startEmbeddedMongo({ path }), { message: /is not a readable snapshot.*move it away/ })
  t.equal(await readFile(path, 'utf8'), '{"keep":{"m":{"documents":[{"tok')
})

// The spawned server's archive consumer would take its messages from the shared queues (any other process may consume
// them), so the test writes the decision's message straight into the server's embedded MongoDB, as its consumer does.
t.test('the built server keeps its archive across a SIGTERM and a new start, in both shapes', async (t) => {
  const pool = new pg.Pool({ connectionString: TEST_DATABASE_URL, max: 2 })
  t.teardown(() => pool.end())
  const url = (s: SpawnedServer): string | undefined =>
    /embedded MongoDB for the \w+ at (\S+)/.exec(s.output())?.[1] ?? /"url":"([^"]+)"[^\n]*embedded MongoDB started/.exec(s.output())?.[1]

  const shapes: Array<{ name: string, env: Record<string, string> }> = [{ name: 'single process', env: {} }, { name: 'cluster primary', env: { WORKERS: '2' } }]
  for (const shape of shapes) {
    await t.test(shape.name, async (t) => {
      const path = await tempPath(t)
      const env = { ...shape.env, MONGO_URL: 'embedded', EMBEDDED_MONGO_PATH: path, EMBEDDED_MONGO_PERSIST_MS: '60000', LOG_LEVEL: 'info' }
      const start = async (): Promise<{ server: SpawnedServer, mongoUrl: string }> => {
        const server = spawnServer(t, env)
        await eventually(async () => (await fetch(`http://127.0.0.1:${server.port}/ready`).catch(() => undefined))?.status === 200, 30_000, 100)
        const mongoUrl = url(server)
        if (mongoUrl === undefined) throw new Error(`no embedded MongoDB URL in the output: ${server.output().slice(-500)}`)
        return { server, mongoUrl }
      }
      const transaction = async (server: SpawnedServer, jitToken: string): Promise<{ archive_status: string, archived: Array<{ message_id: string }> }> =>
        await (await fetch(`http://127.0.0.1:${server.port}/v1/transactions/${jitToken}`, { headers: adminHeaders })).json()

      const { server, mongoUrl } = await start()
      const ch = await cardholder(pool, { fundMinor: 1000 })
      const jitToken = uniq('emb-keep')
      const answer = await fetch(`http://127.0.0.1:${server.port}/marqeta/jit`, {
        method: 'POST', headers: { ...jitHeaders, 'content-type': 'application/json' }, body: JSON.stringify(jitRequest({ user: ch.user, card: ch.card, token: jitToken, amount: '1.00' }))
      })
      t.equal(answer.status, 200, 'approved')
      await withClient(mongoUrl, async (client) => {
        await archiveMessage(client.db(testConfig().MONGO_DB), { routingKey: 'jit.approved.pgfs.authorization', messageId: jitToken, content: Buffer.from(JSON.stringify({ jit_token: jitToken })) })
      })
      t.same((await transaction(server, jitToken)).archived.map((m) => m.message_id), [jitToken], 'archived before the restart')
      const health = await (await fetch(`http://127.0.0.1:${server.port}/health`)).json()
      t.match(health.mongodb, { embedded: true, persistence: 'kept across a graceful restart; a kill may lose the last 60 s' })

      server.kill('SIGTERM')
      t.equal(await server.exited, 0, `a clean exit (${server.output().slice(-300)})`)

      const again = await start()
      const after = await transaction(again.server, jitToken)
      t.same([after.archive_status, after.archived.map((m) => m.message_id)], ['available', [jitToken]], 'still archived after the restart')
      again.server.kill('SIGTERM')
      t.equal(await again.server.exited, 0)
    })
  }
})

t.test('a real MongoDB URL shows no embedded field, and an empty path says memory only', async (t) => {
  const { embeddedPersistence, isEmbeddedMongo } = await import('../../src/embedded-mongo.js')
  t.notOk(isEmbeddedMongo('mongodb://mongo:27017/x'))
  t.ok(isEmbeddedMongo('embedded'))
  const embedded = await startEmbeddedMongo()
  t.teardown(() => embedded.stop())
  t.ok(isEmbeddedMongo(embedded.url), 'the URL a cluster primary hands its workers says it is the embedded server')
  t.match(embeddedPersistence('', 5000), /^memory only/)
  t.equal(embeddedPersistence('.data/x.json', 5000), 'kept across a graceful restart; a kill may lose the last 5 s')
})
