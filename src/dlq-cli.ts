import { pathToFileURL } from 'node:url'
import { loadConfig, redactUrl } from './config.js'
import { runDlq } from './dlq.js'
import type { CliOutput } from './audit-cli.js'

/**
 * `npm run dlq -- list [queue]` and `npm run dlq -- replay [queue] (--id ID | --all)`: shows and re-queues the dead
 * letters of the configured RabbitMQ (RABBITMQ_URL). Returns the exit code: 0 ok, 1 failed, 2 bad usage.
 */
export async function runDlqCli (argv: string[], env?: Record<string, unknown>, out: CliOutput = console): Promise<number> {
  let config
  try {
    config = loadConfig(env, () => {})
  } catch (err) {
    out.error((err as Error).message)
    return 1
  }
  const code = await runDlq(argv, config.RABBITMQ_URL, out.log, out.error)
  if (code === 1) out.error(`(RabbitMQ at ${redactUrl(config.RABBITMQ_URL)})`)
  return code
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  runDlqCli(process.argv.slice(2)).then((code) => { process.exitCode = code }, () => { process.exitCode = 1 })
}
