import type { FastifyPluginAsync } from 'fastify'

const jitRoutes: FastifyPluginAsync = async () => {}
export default jitRoutes
