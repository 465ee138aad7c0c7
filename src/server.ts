import cluster from 'node:cluster'
import closeWithGrace from 'close-with-grace'
import { loadConfig, ConfigError, type Config } from './config.js'
import { buildApp, loggerOptions } from './app.js'
import { startEmbeddedMongo } from './embedded-mongo.js'
import { lowerPriority } from './lower-priority.js'

type Role = Exclude<Config['ROLE'], 'all'>

async function main (): Promise<void> {
  let config
  try {
    config = loadConfig()
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    console.error(err.message)
    process.exit(1)
  }

  if (config.WORKERS > 1 && cluster.isPrimary) {
    // One embedded MongoDB for all processes, or each would archive into (and read from) its own.
    const embedded = config.MONGO_URL === 'embedded' ? await startEmbeddedMongo({ path: config.EMBEDDED_MONGO_PATH, persistIntervalMs: config.EMBEDDED_MONGO_PERSIST_MS }) : undefined
    const env = embedded !== undefined ? { MONGO_URL: embedded.url } : {}
    if (embedded !== undefined) console.log(`embedded MongoDB for the cluster at ${embedded.url}`)
    // ROLE=all splits (DESIGN §7, roles): the request path in WORKERS api processes sharing PORT, the background work
    // in one worker process on WORKER_PORT. ROLE=api or ROLE=worker forks WORKERS processes of that role.
    const roles: Role[] = config.ROLE === 'all' ? [...Array<Role>(config.WORKERS).fill('api'), 'worker'] : Array<Role>(config.WORKERS).fill(config.ROLE)
    const roleOf = new Map<number, Role>()
    const fork = (role: Role): void => { roleOf.set(cluster.fork({ ...env, ROLE: role }).id, role) }
    const count = (role: Role): number => roles.filter((r) => r === role).length
    console.log(`starting ${count('api')} api and ${count('worker')} worker processes`)
    for (const role of roles) fork(role)
    let stopping = false
    cluster.on('exit', (child, code, signal) => {
      const role = roleOf.get(child.id) ?? 'api'
      roleOf.delete(child.id)
      if (!stopping && signal !== 'SIGTERM' && signal !== 'SIGINT' && code !== 0) {
        console.error(`${role} process ${child.process.pid} exited (${signal ?? code}); starting another`)
        fork(role)
      } else if (stopping && Object.values(cluster.workers ?? {}).every((w) => w === undefined || w.isDead())) {
        // The embedded server is the last thing keeping the primary alive; it goes once no process can use it.
        void embedded?.stop()
      }
    })
    const stop = (): void => {
      stopping = true
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM')
    }
    process.on('SIGTERM', stop)
    process.on('SIGINT', stop)
    return
  }

  // Background work yields the CPU to the request path: on a shared host the api processes and PostgreSQL answer
  // decisions first, and the relay and the archive catch up in the gaps (they are never on a decision's path).
  if (config.ROLE === 'worker') lowerPriority(10)

  let app
  try {
    // A terminal gets readable lines (pino-pretty, in a worker thread); anything else gets JSON. The options, redaction
    // and secret scrubbing included, are the same: lines are redacted before they reach the transport.
    const logger = process.stdout.isTTY === true
      ? { ...(loggerOptions(config) as object), transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } }
      : undefined
    app = await buildApp(config, { logger })
  } catch (err) {
    console.error(`boot failed: ${(err as Error).message}`)
    process.exit(1)
  }
  // Stop accepting, let in-flight requests finish, then close plugins in reverse registration order.
  closeWithGrace({ delay: 10_000 }, async ({ signal, err }) => {
    if (err !== undefined) app.log.error({ err }, 'closing after an error')
    else app.log.info({ signal }, 'shutting down')
    // A keep-alive connection whose request finishes during the close would otherwise hold it open until its timeout.
    const sweeper = setInterval(() => app.server.closeIdleConnections(), 50)
    try {
      await app.close()
    } finally {
      clearInterval(sweeper)
    }
  })
  // A worker has no public route: its probes and metrics are on WORKER_PORT, and PORT stays free for api processes.
  await app.listen({ port: config.ROLE === 'worker' ? config.WORKER_PORT : config.PORT, host: config.HOST })
}

void main()
