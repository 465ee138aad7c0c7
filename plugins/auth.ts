import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import { checkBasicAuth, checkBearer, safeEqual } from '../src/credentials.js'

type Guard = (request: FastifyRequest, reply: FastifyReply) => Promise<void>

declare module 'fastify' {
  interface FastifyInstance {
    requireAdmin: Guard
    requireJitCredentials: Guard
    requireWebhookCredentials: Guard
  }
}

function unauthorized (reply: FastifyReply, realm: string, message: string): FastifyReply {
  return reply.code(401).header('www-authenticate', realm).send({ statusCode: 401, error: 'Unauthorized', message })
}

/** onRequest guards for the three audiences: operators (bearer), Marqeta's JIT gateway and its webhooks (Basic). */
export default fp(async (app) => {
  const { config } = app
  app.decorate('requireAdmin', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!checkBearer(request.headers.authorization, config.ADMIN_TOKEN)) return unauthorized(reply, 'Bearer', 'a valid bearer token is required')
  })
  app.decorate('requireJitCredentials', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!checkBasicAuth(request.headers.authorization, config.JIT_BASIC_AUTH_USER, config.JIT_BASIC_AUTH_PASSWORD)) {
      return unauthorized(reply, 'Basic realm="jit"', 'valid JIT gateway credentials are required')
    }
    if (config.JIT_CUSTOM_HEADER_NAME !== undefined && config.JIT_CUSTOM_HEADER_VALUE !== undefined) {
      const value = request.headers[config.JIT_CUSTOM_HEADER_NAME.toLowerCase()]
      if (typeof value !== 'string' || !safeEqual(value, config.JIT_CUSTOM_HEADER_VALUE)) {
        return unauthorized(reply, 'Basic realm="jit"', `the ${config.JIT_CUSTOM_HEADER_NAME} header is missing or wrong`)
      }
    }
  })
  app.decorate('requireWebhookCredentials', async (request: FastifyRequest, reply: FastifyReply) => {
    if (!checkBasicAuth(request.headers.authorization, config.WEBHOOK_BASIC_AUTH_USER, config.WEBHOOK_BASIC_AUTH_PASSWORD)) {
      return unauthorized(reply, 'Basic realm="webhooks"', 'valid webhook credentials are required')
    }
  })
}, { name: 'auth', dependencies: ['config'] })
