import { createHash } from 'node:crypto'
import type { Options } from 'amqplib'

/** The top-level keys of a Marqeta webhook body that we process; any other key is queued and archived too. */
export const knownWebhookTypes = ['transactions', 'cards', 'usertransitions', 'pings'] as const

export interface WebhookItem {
  type: string
  item: unknown
  routingKey: string
  messageId: string
}

/** `webhook.<type>`; an unknown key is reduced to characters that are safe in a topic routing key. */
export function webhookRoutingKey (type: string): string {
  const safe = type.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)
  return `webhook.${safe === '' ? '_' : safe}`
}

/**
 * A message id derived from the item itself, so that Marqeta's retries of one webhook carry the same id and the
 * archive writes each item once. The effects are deduplicated separately, by effect key.
 */
export function webhookMessageId (type: string, item: unknown): string {
  return createHash('sha256').update(type).update('\n').update(JSON.stringify(item) ?? 'null').digest('hex')
}

/** Every item of every key of the body, in order. A key whose value is not an array counts as one item. */
export function webhookItems (body: Record<string, unknown>): WebhookItem[] {
  const items: WebhookItem[] = []
  for (const [type, value] of Object.entries(body)) {
    for (const item of Array.isArray(value) ? value : [value]) {
      items.push({ type, item, routingKey: webhookRoutingKey(type), messageId: webhookMessageId(type, item) })
    }
  }
  return items
}

export interface WebhookPublisher {
  publish: (routingKey: string, body: unknown, options?: Options.Publish) => Promise<void>
}

/**
 * Queues every item and resolves only when the broker has confirmed all of them; rejects if any publish fails
 * (the caller answers 503 and Marqeta retries the whole body: the duplicates are harmless).
 */
export async function queueWebhookItems (broker: WebhookPublisher, items: WebhookItem[], receivedAt: Date,
  observe?: (seconds: number) => void): Promise<void> {
  await Promise.all(items.map(async ({ type, item, routingKey, messageId }) => {
    const started = performance.now()
    await broker.publish(routingKey, item, {
      messageId,
      persistent: true,
      type: routingKey,
      timestamp: Math.floor(receivedAt.getTime() / 1000),
      headers: { 'x-webhook-type': type, 'x-received-at': receivedAt.toISOString() }
    })
    observe?.((performance.now() - started) / 1000)
  }))
}
