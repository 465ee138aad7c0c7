import amqp, { type Channel, type ChannelModel, type GetMessage } from 'amqplib'
import { defaultTopology } from './broker.js'

/** One dead letter as `npm run dlq -- list` shows it. */
export interface DeadLetter {
  queue: string
  messageId?: string
  routingKey: string
  reason: string
  cause?: string
  retries: number
  /** When it was dead-lettered (else when it was first published), and its age at the time of listing. */
  deadLetteredAt?: Date
  ageMs?: number
  preview: string
}

export interface ReplayResult {
  queue: string
  replayed: string[]
  /** Dead letters left in place (not selected by --id). */
  kept: number
}

/** The work queues with a dead-letter queue, when none is named. */
export const defaultQueues = defaultTopology.queues.map((q) => q.name)

const PREVIEW_BYTES = 80

/** `webhooks.process` or `webhooks.process.dlq` → the work queue and its dead-letter queue. */
export function queuePair (queue: string): { work: string, dlq: string } {
  const work = queue.endsWith('.dlq') ? queue.slice(0, -'.dlq'.length) : queue
  return { work, dlq: `${work}.dlq` }
}

function dateOf (value: unknown): Date | undefined {
  if (typeof value !== 'string' && typeof value !== 'number') return undefined
  const date = new Date(value)
  return Number.isNaN(date.getTime()) ? undefined : date
}

function describe (queue: string, msg: GetMessage, now: Date): DeadLetter {
  const headers = (msg.properties.headers ?? {}) as Record<string, unknown>
  const at = dateOf(headers['x-dead-lettered-at']) ??
    (typeof msg.properties.timestamp === 'number' ? new Date(msg.properties.timestamp * 1000) : undefined)
  return {
    queue,
    messageId: msg.properties.messageId as string | undefined,
    routingKey: String(headers['x-original-routing-key'] ?? msg.fields.routingKey),
    reason: String(headers['x-failure-reason'] ?? '(no reason recorded)'),
    cause: headers['x-failure-cause'] === undefined ? undefined : String(headers['x-failure-cause']),
    retries: Number(headers['x-retries'] ?? 0),
    deadLetteredAt: at,
    ageMs: at === undefined ? undefined : now.getTime() - at.getTime(),
    preview: msg.content.subarray(0, PREVIEW_BYTES).toString('utf8').replace(/[\x00-\x1f]/g, ' ')
  }
}

/**
 * Takes every message of `dlq` that was there when it started (basic.get, unacked), lets `visit` settle the ones it
 * wants, and puts every other one back (nack with requeue) at the end, so nothing is lost and none is seen twice.
 */
async function sweep (channel: Channel, dlq: string, visit: (msg: GetMessage) => Promise<boolean>): Promise<number> {
  const { messageCount } = await channel.checkQueue(dlq)
  const untouched: GetMessage[] = []
  try {
    for (let i = 0; i < messageCount; i++) {
      const msg = await channel.get(dlq, { noAck: false })
      if (msg === false) break
      if (!await visit(msg)) untouched.push(msg)
    }
  } finally {
    for (const msg of untouched) channel.nack(msg, false, true)
  }
  return untouched.length
}

/** The dead letters of `queue` (its `.dlq`), read without removing any. */
export async function listDeadLetters (connection: ChannelModel, queue: string, now = new Date()): Promise<DeadLetter[]> {
  const { dlq } = queuePair(queue)
  const channel = await connection.createChannel()
  try {
    const letters: DeadLetter[] = []
    await sweep(channel, dlq, async (msg) => {
      letters.push(describe(queuePair(queue).work, msg, now))
      return false
    })
    return letters
  } finally {
    await channel.close().catch(() => {})
  }
}

/**
 * Moves dead letters of `queue` back to their work queue: each is published to the work queue (confirmed), then
 * acked from the dead-letter queue, so a crash in between leaves a copy on both sides (effects are keyed: harmless),
 * never on neither. Its message id is kept, its tries start again.
 */
export async function replayDeadLetters (connection: ChannelModel, queue: string, select: { id?: string, all?: boolean }): Promise<ReplayResult> {
  const { work, dlq } = queuePair(queue)
  if (select.id === undefined && select.all !== true) throw new Error('replay needs --id ID or --all')
  const channel = await connection.createConfirmChannel()
  try {
    const replayed: string[] = []
    const kept = await sweep(channel, dlq, async (msg) => {
      const messageId = msg.properties.messageId as string | undefined
      if (select.id !== undefined && messageId !== select.id) return false
      const headers: Record<string, unknown> = { ...(msg.properties.headers ?? {}), 'x-retries': 0, 'x-transient-retries': 0, 'x-replayed-at': new Date().toISOString() }
      delete headers['x-dead-lettered-at']
      headers['x-original-routing-key'] ??= msg.fields.routingKey
      const { expiration: _expiration, headers: _headers, ...properties } = msg.properties
      channel.sendToQueue(work, msg.content, { ...properties, headers, persistent: true })
      await channel.waitForConfirms()
      channel.ack(msg)
      replayed.push(messageId ?? '(no id)')
      return true
    })
    return { queue: work, replayed, kept }
  } finally {
    await channel.close().catch(() => {})
  }
}

export const usage = 'usage: npm run dlq -- list [queue] | npm run dlq -- replay [queue] (--id ID | --all)'

export type DlqCommand =
  | { command: 'list', queues: string[] }
  | { command: 'replay', queues: string[], id?: string, all: boolean }

/** Parses the CLI's arguments; undefined means bad usage. */
export function parseDlqArgs (argv: string[]): DlqCommand | undefined {
  const [command, ...rest] = argv
  const positional: string[] = []
  let id: string | undefined
  let all = false
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]
    if (arg === '--all') all = true
    else if (arg === '--id') {
      id = rest[++i]
      if (id === undefined || id.startsWith('--')) return undefined
    } else if (arg.startsWith('--id=')) id = arg.slice('--id='.length)
    else if (arg.startsWith('-')) return undefined
    else positional.push(arg)
  }
  if (positional.length > 1) return undefined
  const queues = positional.length === 1 ? [positional[0]] : defaultQueues
  if (command === 'list') return id === undefined && !all ? { command, queues } : undefined
  if (command === 'replay') return (id !== undefined) === all ? undefined : { command, queues, id, all }
  return undefined
}

function age (ms: number | undefined): string {
  if (ms === undefined) return '?'
  const s = Math.max(0, Math.round(ms / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.round(s / 60)}m`
  if (s < 172800) return `${Math.round(s / 3600)}h`
  return `${Math.round(s / 86400)}d`
}

/** Runs one CLI command against RabbitMQ; returns the exit code (0 ok, 1 failure, 2 bad usage). */
export async function runDlq (argv: string[], url: string, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  const parsed = parseDlqArgs(argv)
  if (parsed === undefined) {
    err(usage)
    return 2
  }
  let connection: ChannelModel
  try {
    connection = await amqp.connect(url, { timeout: 5000 })
  } catch (e) {
    err(`cannot reach RabbitMQ: ${(e as Error).message}`)
    return 1
  }
  connection.on('error', () => {})
  try {
    for (const queue of parsed.queues) {
      if (parsed.command === 'list') {
        const letters = await listDeadLetters(connection, queue)
        out(`${queuePair(queue).dlq}: ${letters.length} dead letter${letters.length === 1 ? '' : 's'}`)
        for (const l of letters) {
          out(`  ${l.messageId ?? '(no id)'}  age ${age(l.ageMs)}  ${l.routingKey}  tries ${l.retries}  reason: ${l.reason}`)
          out(`    ${l.preview}`)
        }
      } else {
        const result = await replayDeadLetters(connection, queue, parsed)
        out(`${queuePair(queue).dlq}: replayed ${result.replayed.length} to ${result.queue}, ${result.kept} left`)
        for (const id of result.replayed) out(`  ${id}`)
        if (parsed.id !== undefined && result.replayed.length === 0) out(`  no dead letter with id ${parsed.id}`)
      }
    }
    return 0
  } catch (e) {
    err(`dlq ${parsed.command} failed: ${(e as Error).message}`)
    return 1
  } finally {
    await connection.close().catch(() => {})
  }
}
