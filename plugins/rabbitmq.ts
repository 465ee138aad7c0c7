import fp from 'fastify-plugin'
import { Broker } from '../src/broker.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: Broker
  }
}

/** RabbitMQ is optional at boot: publishing fails fast while it is down and the connection keeps retrying. */
export default fp(async (app) => {
  const broker = new Broker(app.config.RABBITMQ_URL, {
    prefetch: app.config.RABBITMQ_PREFETCH,
    retryDelayMs: app.config.RABBITMQ_RETRY_DELAY_MS,
    log: app.log
  })
  await broker.start()
  app.decorate('broker', broker)
  app.addHook('onClose', () => broker.close())
}, { name: 'rabbitmq', dependencies: ['config'] })
