import { createHash } from 'node:crypto'
import { ObjectId, type Db } from 'mongodb'
import { jitFundingOf, type Transaction } from './marqeta.js'
import { classifyFailure, withTimeout } from './failures.js'

export const archiveCollection = 'marqeta_messages'
/** Ledger and other internal events: kept apart so that the Marqeta archive holds Marqeta's messages only. */
export const eventsCollection = 'events'
/**
 * How long one archive write may take: a hung MongoDB must not hold the consumer's deliveries forever. A write that
 * runs out of time is a transient failure (retried, never dead-lettered); the insert is keyed, so a late one is harmless.
 */
export const ARCHIVE_WRITE_TIMEOUT_MS = 5000

/** Indexes of DESIGN §7. CongoDB does not enforce unique indexes, so uniqueness comes from the `_id`. */
export async function ensureArchiveIndexes (db: Db): Promise<void> {
  const messages = db.collection(archiveCollection)
  await messages.createIndex({ token: 1 })
  await messages.createIndex({ jit_token: 1 })
  await messages.createIndex({ card_token: 1 })
  await messages.createIndex({ user_token: 1 })
  await messages.createIndex({ received_at: -1 })
  await messages.createIndex({ message_id: 1 })
  await messages.createIndex({ original_jit_token: 1 })
  const events = db.collection(eventsCollection)
  await events.createIndex({ jit_token: 1 })
  await events.createIndex({ user_token: 1 })
  await events.createIndex({ received_at: -1 })
}

export interface ArchivedMessage {
  _id: ObjectId
  message_id: string
  routing_key: string
  token?: string
  jit_token?: string
  /** The authorization a clearing, reversal or incremental refers to: finds them from the original's token. */
  original_jit_token?: string
  card_token?: string
  user_token?: string
  received_at: Date
  payload: unknown
}

/**
 * The document `_id` for a message id: an ObjectId made of the first 12 bytes of its SHA-256, so that a redelivered
 * message lands on the same document. (CongoDB, the embedded server, only accepts ObjectId `_id`s.)
 */
export function archiveId (messageId: string): ObjectId {
  return new ObjectId(createHash('sha256').update(messageId).digest().subarray(0, 12))
}

export interface ArchiveInput {
  routingKey: string
  messageId?: string
  content: Buffer
  headers?: Record<string, unknown>
}

const str = (v: unknown): string | undefined => typeof v === 'string' && v !== '' ? v : undefined
const obj = (v: unknown): Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) ? v as Record<string, unknown> : {}

/** Which collection a message goes to and the document it becomes: the tokens it can be found by, and the whole payload. */
export function archiveDocument (input: ArchiveInput, now = new Date()): { collection: string, doc: ArchivedMessage } {
  const { routingKey, content } = input
  const messageId = input.messageId ?? createHash('sha256').update(routingKey).update('\n').update(content).digest('hex')
  let payload: unknown
  try {
    payload = JSON.parse(content.toString('utf8'))
  } catch {
    payload = { unparsable: content.toString('base64') }
  }
  const body = obj(payload)
  const doc: ArchivedMessage = {
    _id: archiveId(messageId),
    message_id: messageId,
    routing_key: routingKey,
    received_at: receivedAt(input.headers, body, now),
    payload
  }
  let collection = eventsCollection
  if (routingKey.startsWith('jit.')) {
    // The JIT path's event: {jit_token, user_token, card_token, request, response, ...}.
    collection = archiveCollection
    const request = obj(body.request)
    doc.token = str(request.token) ?? str(body.jit_token)
    doc.jit_token = str(body.jit_token)
    doc.original_jit_token = str(obj(jitFundingOf(request as Transaction)).original_jit_funding_token)
    doc.card_token = str(body.card_token) ?? str(request.card_token)
    doc.user_token = str(body.user_token) ?? str(request.user_token)
  } else if (routingKey.startsWith('webhook.')) {
    // A webhook item as Marqeta sent it: a transaction, a card or user transition, a ping, or anything else.
    collection = archiveCollection
    const jit = jitFundingOf(body as Transaction)
    doc.token = str(body.token)
    doc.jit_token = str(obj(jit).token)
    doc.original_jit_token = str(obj(jit).original_jit_funding_token)
    doc.card_token = str(body.card_token)
    doc.user_token = str(body.user_token) ?? str(obj(jit).user_token)
  } else {
    doc.jit_token = str(body.jit_token) ?? str(body.hold_jit_token)
    doc.user_token = str(body.user_token)
  }
  for (const key of ['token', 'jit_token', 'original_jit_token', 'card_token', 'user_token'] as const) if (doc[key] === undefined) delete doc[key]
  return { collection, doc }
}

function receivedAt (headers: Record<string, unknown> | undefined, body: Record<string, unknown>, now: Date): Date {
  for (const candidate of [headers?.['x-received-at'], body.created_at]) {
    if (typeof candidate === 'string') {
      const date = new Date(candidate)
      if (!Number.isNaN(date.getTime())) return date
    }
  }
  return now
}

/** Writes a message once: an insert keyed by its `_id`, so a redelivery is a duplicate-key error that changes nothing. */
export async function archiveMessage (db: Db, input: ArchiveInput, now = new Date(), timeoutMs = ARCHIVE_WRITE_TIMEOUT_MS): Promise<{ collection: string, id: ObjectId, inserted: boolean }> {
  const { collection, doc } = archiveDocument(input, now)
  try {
    await withTimeout(db.collection<ArchivedMessage>(collection).insertOne(doc), timeoutMs, 'archive insert')
    return { collection, id: doc._id, inserted: true }
  } catch (err) {
    if ((err as { code?: unknown }).code === DUPLICATE_KEY) return { collection, id: doc._id, inserted: false }
    throw err
  }
}

// Inserts rather than upserts: an upsert makes the embedded server scan the whole collection (quadratic in the
// archive's size, it was the largest cost of a JIT decision in the bench), an insert is a lookup on both servers.
const DUPLICATE_KEY = 11000

interface PendingWrite {
  collection: string
  doc: ArchivedMessage
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * Batches the consumer's writes: the messages a delivery burst hands over in one tick (up to the prefetch) become one
 * unordered bulk insert per collection. Each write still resolves only once its document is durable; the broker
 * then acks the burst with one multiple ack (src/channel-acks.ts).
 */
export class ArchiveWriter {
  private pending: PendingWrite[] = []
  private scheduled = false

  constructor (private readonly db: Db, private readonly maxBatch = 64, private readonly timeoutMs = ARCHIVE_WRITE_TIMEOUT_MS) {}

  write (input: ArchiveInput): Promise<void> {
    const { collection, doc } = archiveDocument(input)
    return new Promise<void>((resolve, reject) => {
      this.pending.push({ collection, doc, resolve, reject })
      if (this.pending.length >= this.maxBatch) {
        this.flush()
      } else if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => {
          this.scheduled = false
          this.flush()
        })
      }
    })
  }

  private flush (): void {
    const batch = this.pending
    this.pending = []
    const byCollection = new Map<string, PendingWrite[]>()
    for (const write of batch) {
      const list = byCollection.get(write.collection) ?? []
      list.push(write)
      byCollection.set(write.collection, list)
    }
    for (const [collection, writes] of byCollection) {
      // A redelivered message may sit twice in one batch: insert it once, the copy waits on the same result.
      const docs = new Map<string, ArchivedMessage>()
      for (const { doc } of writes) docs.set(doc._id.toHexString(), doc)
      const unique = [...docs.values()]
      const insert = this.db.collection<ArchivedMessage>(collection).insertMany(unique, { ordered: false })
      withTimeout(insert, this.timeoutMs, `archive insert of ${unique.length} documents`).then(
        () => { for (const w of writes) w.resolve() },
        (err: { writeErrors?: unknown }) => {
          // Already archived (duplicate `_id`) is success; any other failure rejects only the documents it names.
          const writeErrors = [err.writeErrors ?? []].flat() as Array<{ code?: number, index?: number }>
          const failed = new Set(writeErrors.filter((e) => e.code !== DUPLICATE_KEY).map((e) => unique[e.index ?? -1]?._id.toHexString()))
          const unexplained = writeErrors.length === 0
          for (const w of writes) {
            if (unexplained || failed.has(w.doc._id.toHexString())) w.reject(err)
            else w.resolve()
          }
        }
      )
    }
  }
}

/** MongoDB could not be reached (as opposed to refusing a document): the archive waits for it instead of failing. */
export function isMongoUnavailable (err: unknown): boolean {
  return classifyFailure(err).cause === 'mongodb'
}
