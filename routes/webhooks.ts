import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { Type, type Static } from '@sinclair/typebox'
import { verifySignature } from '../src/webhooks/signature.js'
import { queueWebhookItems, webhookItems } from '../src/webhooks/queue.js'

const WEBHOOK_BODY_LIMIT = 256 * 1024

const Items = Type.Array(Type.Object({}, { additionalProperties: true }))
// Unknown top-level keys are accepted (and archived): Marqeta adds event types over time.
const WebhookBodySchema = Type.Object({
  transactions: Type.Optional(Items),
  cards: Type.Optional(Items),
  usertransitions: Type.Optional(Items),
  pings: Type.Optional(Items)
}, { additionalProperties: true })
type WebhookBody = Static<typeof WebhookBodySchema>

const QueuedSchema = Type.Object({ queued: Type.Integer() })
const ErrorSchema = Type.Object({
  statusCode: Type.Integer(),
  error: Type.String(),
  message: Type.String(),
  code: Type.Optional(Type.String())
})

class HttpError extends Error {
  constructor (readonly statusCode: number, message: string, readonly code?: string) { super(message) }
}

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
    try {
      request.body = JSON.parse(raw.toString('utf8'))
    } catch {
      throw new HttpError(400, 'body is not valid JSON', 'FST_ERR_CTP_INVALID_JSON_BODY')
    }
  }

  app.post<{ Body: WebhookBody }>('/marqeta/webhooks', {
    onRequest: app.requireWebhookCredentials,
    preValidation: verifyAndParse,
    bodyLimit: WEBHOOK_BODY_LIMIT,
    schema: {
      body: WebhookBodySchema,
      response: { 200: QueuedSchema, 400: ErrorSchema, 401: ErrorSchema, 413: ErrorSchema, 503: ErrorSchema }
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
