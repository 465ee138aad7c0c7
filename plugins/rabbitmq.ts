import fp from 'fastify-plugin'
import { Broker, type Settlement, type Topology } from '../src/broker.js'

declare module 'fastify' {
  interface FastifyInstance {
    broker: Broker
  }
}

/** RabbitMQ is optional at boot: publishing fails fast while it is down and the connection keeps retrying. */
export default fp<{ topology?: Topology }>(async (app, options) => {
  const { telemetry } = app
  const broker = new Broker(app.config.RABBITMQ_URL, {
    topology: options.topology,
    prefetch: app.config.RABBITMQ_PREFETCH,
    retryDelayMs: app.config.RABBITMQ_RETRY_DELAY_MS,
    log: app.log
  })
  broker.on('settled', ({ queue, outcome, failure }: Settlement) => {
    if (outcome === 'retried' && failure !== undefined) telemetry.consumerRetries.inc({ queue, cause: failure.cause })
    if (outcome === 'dead-lettered') telemetry.consumerDeadLetters.inc({ queue })
  })
  broker.on('paused', ({ queue }: { queue: string }) => telemetry.consumerPaused.set({ queue }, 1))
  broker.on('resumed', ({ queue }: { queue: string }) => telemetry.consumerPaused.set({ queue }, 0))
  await broker.start()
  app.decorate('broker', broker)
  app.addHook('onClose', () => broker.close())
}, { name: 'rabbitmq', dependencies: ['config'] })
