import fp from 'fastify-plugin'
import fastifyMongo from '@fastify/mongodb'
import { MongoClient } from 'mongodb'
import { ensureArchiveIndexes } from '../src/archive.js'
import { startEmbeddedMongo } from '../src/embedded-mongo.js'

/**
 * MongoDB holds the archive only: it is off the decision path, so an outage at boot means a degraded archive, never
 * a failed boot. MONGO_URL=embedded starts CongoDB in-process (development and tests; see src/embedded-mongo.ts).
 * @see https://github.com/fastify/fastify-mongodb
 */
export default fp(async (app) => {
  const { config } = app
  let url = config.MONGO_URL
  let stopEmbedded: (() => Promise<void>) | undefined
  if (url === 'embedded') {
    const embedded = await startEmbeddedMongo({ path: config.EMBEDDED_MONGO_PATH, persistIntervalMs: config.EMBEDDED_MONGO_PERSIST_MS })
    url = embedded.url
    stopEmbedded = embedded.stop
    app.log.info({ url, path: config.EMBEDDED_MONGO_PATH }, 'embedded MongoDB started')
  }
  const client = new MongoClient(url, {
    minPoolSize: 2,
    maxPoolSize: 10,
    serverSelectionTimeoutMS: 1500,
    connectTimeoutMS: 1500
  })
  await app.register(fastifyMongo, { client, database: config.MONGO_DB, forceClose: true })
  const prepare = async (): Promise<void> => {
    await client.connect()
    await ensureArchiveIndexes(client.db(config.MONGO_DB))
  }
  try {
    await prepare()
  } catch (err) {
    app.log.warn({ err: (err as Error).message }, 'MongoDB unreachable at boot; archive degraded, retrying in the background')
    const timer = setInterval(() => {
      prepare().then(() => { clearInterval(timer); app.log.info('MongoDB reachable; archive indexes ready') }, () => {})
    }, 5000)
    timer.unref()
    app.addHook('onClose', async () => clearInterval(timer))
  }
  // @fastify/mongodb does not close a client it was given: without this a real MONGO_URL kept the process alive after
  // close. The client must be gone before an embedded server, or the driver keeps monitoring timers alive; the
  // embedded server's stop writes its last snapshot, so a graceful shutdown keeps the archive.
  app.addHook('onClose', async () => {
    await client.close(true)
    await stopEmbedded?.()
  })
}, { name: 'mongodb', dependencies: ['config'] })
