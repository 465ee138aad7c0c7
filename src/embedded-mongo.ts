import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'

export interface EmbeddedMongoOptions {
  /** The snapshot file (relative to the working directory); '' keeps everything in memory only. */
  path?: string
  /** How often the snapshot is written while running: at most this much is lost to a kill. */
  persistIntervalMs?: number
}

export interface EmbeddedMongo {
  url: string
  /** Stops the server, then writes the last snapshot: resolved once the data is on disk. */
  stop: () => Promise<void>
}

/** In the URL the embedded server hands out, so that a worker given only the URL knows what it talks to. */
const APP_NAME = 'jit-gateway-embedded'

/** Whether a (config's) MONGO_URL is the embedded server: `embedded` itself, or the URL a cluster primary gave its workers. */
export function isEmbeddedMongo (mongoUrl: string): boolean {
  return mongoUrl === 'embedded' || mongoUrl.includes(`appName=${APP_NAME}`)
}

/** What the embedded server keeps, in words, for /health. */
export function embeddedPersistence (path: string, persistIntervalMs: number): string {
  return path === '' ? 'memory only: a restart loses the archive' : `kept across a graceful restart; a kill may lose the last ${persistIntervalMs / 1000} s`
}

/**
 * CongoDB (TOOLING.md): a wire-compatible MongoDB server written in TypeScript, started in this process when
 * MONGO_URL=embedded (development and tests). Only a dev dependency: a production image sets MONGO_URL and never
 * loads it. The URL carries the client options this server needs (one server, polled monitoring), so any process
 * given it connects the same way.
 *
 * With a path, its memory is restored from a snapshot file at start and written back on an interval and at stop.
 * CongoDB's own `persistPath` is not used: it writes the file in place (a kill mid-write leaves a truncated file, which
 * its restore then ignores and its next write replaces, archive and all) and as plain JSON (every Date comes back
 * a string). Here the snapshot is Extended JSON, written to a temporary file and renamed over the old one.
 */
export async function startEmbeddedMongo ({ path = '', persistIntervalMs = 5000 }: EmbeddedMongoOptions = {}): Promise<EmbeddedMongo> {
  const congo = '@push.rocks/smartmongo/dist_ts/congodb/'
  const { CongoServer } = await import(congo + 'index.js')
  // CongoDB's own copy of bson: its documents hold that copy's types, which another major version refuses to serialize.
  const { bson } = await import(congo + 'congodb.plugins.js')
  const server = new CongoServer({ host: '127.0.0.1', port: 0 })
  const storage: Storage = server.getStorage()
  if (path !== '') await restore(storage, bson.EJSON, path)
  await server.start()
  const port: number = (server as any).server?.address()?.port ?? server.port

  // A snapshot is the whole data set: written only after a change, and one at a time, so that an older snapshot
  // never lands after a newer one.
  let changed = false
  for (const method of MUTATIONS) {
    const original = storage[method].bind(storage) as (...args: unknown[]) => Promise<unknown>
    ;(storage as any)[method] = async (...args: unknown[]) => { changed = true; return await original(...args) }
  }
  let writing = Promise.resolve()
  const persist = async (): Promise<void> => {
    writing = writing.catch(() => {}).then(async () => {
      if (!changed) return
      changed = false
      try {
        await snapshot(storage, bson.EJSON, path)
      } catch (err) {
        changed = true
        throw err
      }
    })
    await writing
  }
  const timer = path === ''
    ? undefined
    : setInterval(() => { persist().catch((err) => console.warn(`embedded MongoDB: snapshot to ${path} failed: ${(err as Error).message}`)) }, persistIntervalMs)
  timer?.unref()
  return {
    url: `mongodb://127.0.0.1:${port}/?directConnection=true&serverMonitoringMode=poll&appName=${APP_NAME}`,
    stop: async () => {
      clearInterval(timer)
      // Connections first: no write can arrive after the last snapshot.
      await server.stop()
      if (path !== '') await persist()
    }
  }
}

/** CongoDB's storage adapter methods that change its data (every write of its command handlers goes through one). */
const MUTATIONS = ['insertOne', 'updateById', 'deleteById', 'deleteByIds', 'createCollection', 'dropCollection', 'dropDatabase',
  'renameCollection', 'saveIndex', 'dropIndex'] as const

/** The part of CongoDB's storage adapter (its IStorageAdapter) a snapshot reads and a restore writes. */
interface Storage extends Record<typeof MUTATIONS[number], (...args: any[]) => Promise<unknown>> {
  listDatabases: () => Promise<string[]>
  listCollections: (db: string) => Promise<string[]>
  findAll: (db: string, collection: string) => Promise<object[]>
  getIndexes: (db: string, collection: string) => Promise<Array<{ name: string } & Record<string, unknown>>>
  createCollection: (db: string, collection: string) => Promise<void>
  insertMany: (db: string, collection: string, docs: object[]) => Promise<unknown>
  saveIndex: (db: string, collection: string, name: string, spec: Record<string, unknown>) => Promise<void>
}

interface EJSON { stringify: (value: unknown, options: { relaxed: boolean }) => string, parse: (text: string, options: { relaxed: boolean }) => any }

type Snapshot = Record<string, Record<string, { documents: object[], indexes: Array<{ name: string } & Record<string, unknown>> }>>

async function snapshot (storage: Storage, ejson: EJSON, path: string): Promise<void> {
  const data: Snapshot = {}
  for (const db of await storage.listDatabases()) {
    data[db] = {}
    for (const collection of await storage.listCollections(db)) {
      data[db][collection] = { documents: await storage.findAll(db, collection), indexes: await storage.getIndexes(db, collection) }
    }
  }
  await mkdir(dirname(path), { recursive: true })
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, ejson.stringify(data, { relaxed: false }))
  await rename(temporary, path)
}

async function restore (storage: Storage, ejson: EJSON, path: string): Promise<void> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return
    throw err
  }
  let data: Snapshot
  try {
    data = ejson.parse(text, { relaxed: false })
  } catch (err) {
    // Starting empty would overwrite the file at the first snapshot: the operator decides what to do with it.
    throw new Error(`embedded MongoDB: ${path} is not a readable snapshot (${(err as Error).message}); move it away to start empty`)
  }
  for (const [db, collections] of Object.entries(data)) {
    for (const [collection, { documents, indexes }] of Object.entries(collections)) {
      await storage.createCollection(db, collection)
      await storage.insertMany(db, collection, documents)
      for (const { name, ...spec } of indexes) if (name !== '_id_') await storage.saveIndex(db, collection, name, spec)
    }
  }
}
