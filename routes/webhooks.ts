import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { verifySignature } from '../src/webhooks/signature.js'
import { queueWebhookItems, webhookItems } from '../src/webhooks/queue.js'
import { HttpError } from '../src/admin/errors.js'
import { errorResponse } from './schemas.js'
import { jsonDeeperThan, tooDeepMessage } from '../src/json-depth.js'

const WEBHOOK_BODY_LIMIT = 256 * 1024

const Items = Type.Array(Type.Object({}, { additionalProperties: true }), { description: 'up to 10 per delivery (more are accepted)' })
// Unknown top-level keys are accepted (and archived): Marqeta adds event types over time.
const WebhookBodySchema = Type.Object({
  transactions: Type.Optional(Items),
  cards: Type.Optional(Items),
  usertransitions: Type.Optional(Items),
  pings: Type.Optional(Items)
}, {
  additionalProperties: true,
  description: 'One of transactions, cards, usertransitions or the ping; unknown top-level keys are accepted and archived',
  examples: [{
    transactions: [{
      type: 'authorization.clearing',
      state: 'COMPLETION',
      token: 'txn-0003',
      user_token: 'alice',
      card_token: 'card-alice-1',
      amount: 12.5,
      currency_code: 'USD',
      gpa_order: { jit_funding: { token: 'jit-0003', method: 'pgfs.authorization.clearing', user_token: 'alice', amount: 12.5, original_jit_funding_token: 'jit-0001' } }
    }]
  }]
})
type WebhookBody = Static<typeof WebhookBodySchema>

const QueuedSchema = Type.Object({ queued: Type.Integer({ description: 'items durably queued (publisher confirms)' }) }, {
  description: 'Every item is durably queued; processing is asynchronous and idempotent',
  examples: [{ queued: 1 }]
})

/**
 * POST /marqeta/webhooks (DESIGN §5, a contract): Basic auth, then the HMAC of the raw bytes when WEBHOOK_SECRET is
 * set, then JSON; exactly 200 once the broker has confirmed every item, 503 otherwise so that Marqeta retries.
 * This encapsulated plugin's body parser keeps the bytes: the signature must be checked before parsing.
 */
const webhookRoutes: FastifyPluginAsync = async (app) => {
  const { config, broker, telemetry } = app

  // Every body is kept as bytes, whatever its content type: the signature is over the bytes, and the body is JSON.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer', bodyLimit: WEBHOOK_BODY_LIMIT }, (_request, body, done) => {
    done(null, body)
  })

  const verifyAndParse = async (request: FastifyRequest): Promise<void> => {
    const raw = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0)
    if (config.WEBHOOK_SECRET !== undefined &&
        !verifySignature(raw, request.headers['x-marqeta-signature'], config.WEBHOOK_SECRET, config.WEBHOOK_SIGNATURE_ALGORITHM)) {
      throw new HttpError(401, 'the X-Marqeta-Signature header is missing or does not match the body', 'INVALID_SIGNATURE')
    }
    if (!Buffer.isBuffer(request.body)) return
    let body: unknown
    try {
      body = JSON.parse(raw.toString('utf8'))
    } catch {
      throw new HttpError(400, 'body is not valid JSON', 'FST_ERR_CTP_INVALID_JSON_BODY')
    }
    // Each item is hashed, queued and archived by code that recurses: such a body could never be archived anyway.
    if (jsonDeeperThan(body)) throw new HttpError(400, tooDeepMessage, 'BODY_TOO_DEEP')
    request.body = body
  }

  app.post<{ Body: WebhookBody }>('/marqeta/webhooks', {
    onRequest: app.requireWebhookCredentials,
    preValidation: verifyAndParse,
    bodyLimit: WEBHOOK_BODY_LIMIT,
    schema: {
      tags: ['marqeta'],
      summary: 'Marqeta webhooks',
      description: 'Basic auth (separate credentials from the JIT gateway); when WEBHOOK_SECRET is set, X-Marqeta-Signature must be the lowercase hex HMAC (SHA-256, or SHA-1 when configured) of the raw body. Exactly 200 once every item is queued; anything else makes Marqeta retry.',
      body: WebhookBodySchema,
      response: {
        200: QueuedSchema,
        400: errorResponse(400, 'Malformed JSON, an invalid body or a body nested too deep', 'body is not valid JSON', 'FST_ERR_CTP_INVALID_JSON_BODY'),
        401: errorResponse(401, 'Missing or wrong Basic credentials, or a signature that does not match the body', 'the X-Marqeta-Signature header is missing or does not match the body', 'INVALID_SIGNATURE'),
        413: errorResponse(413, 'Body larger than 256 KiB'),
        503: errorResponse(503, 'The items could not be queued (RabbitMQ unavailable): Marqeta retries', 'webhook could not be queued')
      }
    }
  }, async (request) => {
    const items = webhookItems(request.body)
    try {
      await queueWebhookItems(broker, items, new Date(), (seconds) => telemetry.publishDuration.observe(seconds))
    } catch (err) {
      request.log.warn({ err: (err as Error).message, items: items.length }, 'webhook not queued; answering 503 so that Marqeta retries')
      throw new HttpError(503, 'webhook could not be queued')
    }
    request.log.info({ items: items.length, types: [...new Set(items.map((i) => i.type))] }, 'webhook queued')
    return { queued: items.length }
  })
}

export default webhookRoutes
