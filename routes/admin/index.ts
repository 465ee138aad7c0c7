import type { FastifyPluginAsync } from 'fastify'

const adminRoutes: FastifyPluginAsync = async () => {}
export default adminRoutes
