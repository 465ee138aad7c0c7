import type { Db } from 'mongodb'

export const archiveCollection = 'marqeta_messages'

/** Indexes of DESIGN §7. CongoDB does not enforce unique indexes, so uniqueness comes from upserts by `_id`. */
export async function ensureArchiveIndexes (db: Db): Promise<void> {
  const messages = db.collection(archiveCollection)
  await messages.createIndex({ token: 1 })
  await messages.createIndex({ jit_token: 1 })
  await messages.createIndex({ card_token: 1 })
  await messages.createIndex({ user_token: 1 })
  await messages.createIndex({ received_at: -1 })
}
