import fp from 'fastify-plugin'

export default fp(async () => {}, { name: 'workers', dependencies: ['config', 'postgres', 'rabbitmq', 'mongodb'] })
