import fp from 'fastify-plugin'
import { PgContextSource, type ContextSource } from '../src/jit/context.js'

export interface Invalidation { cards?: string[], users?: string[], controls?: string[] }

declare module 'fastify' {
  interface FastifyInstance {
    contextSource: ContextSource
    invalidateContext: (what: Invalidation) => Promise<void>
  }
}

export default fp(async (app) => {
  app.decorate('contextSource', new PgContextSource(app.db))
  app.decorate('invalidateContext', async (_what: Invalidation) => {})
}, { name: 'cache', dependencies: ['config', 'postgres', 'redis'] })
