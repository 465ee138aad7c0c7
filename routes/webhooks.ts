import type { FastifyPluginAsync } from 'fastify'

const webhookRoutes: FastifyPluginAsync = async () => {}
export default webhookRoutes
