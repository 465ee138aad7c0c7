import type { FastifyPluginAsync } from 'fastify'
import users from './users.js'
import cards from './cards.js'
import loads from './loads.js'
import controls from './controls.js'
import transactions from './transactions.js'
import jitStats from './jit-stats.js'
import { rejectDeepBody } from '../schemas.js'

/** The admin API of DESIGN §6, registered under /v1; every route in this context needs the admin bearer token. */
const adminRoutes: FastifyPluginAsync = async (app) => {
  app.addHook('onRequest', app.requireAdmin)
  app.addHook('preValidation', rejectDeepBody)
  await app.register(users)
  await app.register(cards)
  await app.register(loads)
  await app.register(controls)
  await app.register(transactions)
  await app.register(jitStats)
}

export default adminRoutes
