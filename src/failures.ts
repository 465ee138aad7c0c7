/**
 * Why a consumer's handler failed, in a bounded set (it is a metric label). Every cause but `permanent` can pass:
 * `postgres` / `mongodb` the store could not be reached, `lock` contention (lock wait, serialization, deadlock),
 * `timeout` a statement or write that ran out of time.
 */
export const failureCauses = ['postgres', 'mongodb', 'lock', 'timeout', 'permanent'] as const
export type FailureCause = typeof failureCauses[number]

export interface Failure {
  transient: boolean
  cause: FailureCause
  reason: string
}

/** Thrown by a handler that knows its failure can pass (the message is not at fault): retried, never dead-lettered. */
export class RetryLaterError extends Error {
  override name = 'RetryLaterError'
  constructor (message: string, readonly failureCause: Exclude<FailureCause, 'permanent'> = 'timeout') { super(message) }
}

// SQLSTATEs of failures that pass: contention, and a server that is starting, stopping, full or failing over.
const pgLock = new Set(['55P03', '40001', '40P01'])
// 25006: a read-only transaction, i.e. a connection to a primary that was demoted; 40003: the server may have completed
// the statement or not (the handlers are idempotent, so running it again is safe).
const pgUnavailable = new Set(['57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '25006', '40003'])
// Whole classes: 53 insufficient resources (disk full, out of memory, too many connections), 58 system error (I/O).
const pgUnavailableClasses = new Set(['53', '58'])
const networkCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EPIPE', 'EAI_AGAIN'])
// node-postgres reports a lost or unobtainable connection by message only.
const pgConnectionMessage = /Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|connection is not queryable|Connection ended/i
// The driver's error classes, by name: a second copy of the driver (a nested dependency, a test loader) has classes of
// its own, so instanceof is not reliable.
const mongoUnavailableErrors = new Set(['MongoNetworkError', 'MongoNetworkTimeoutError', 'MongoServerSelectionError', 'MongoNotConnectedError', 'MongoTopologyClosedError', 'MongoServerClosedError', 'MongoPoolClearedError'])
const mongoTimeoutErrors = new Set(['MongoOperationTimeoutError', 'MongoWriteConcernError'])
const mongoNetworkMessage = /ECONNREFUSED|ECONNRESET|connection .* closed|timed out|Server selection|not connected|Topology is closed|socket/i
// MongoDB server codes: MaxTimeMSExpired, WriteConcernFailed (wtimeout), and the "not primary / shutting down" family.
const mongoTimeoutCodes = new Set([50, 64])
const mongoUnavailableCodes = new Set([91, 189, 10107, 11600, 11602, 13435, 13436])

/** The one place that decides whether a consumer's failure can pass (retry without limit) or never will (dead-letter). */
export function classifyFailure (err: unknown): Failure {
  const reason = (err as Error)?.message ?? String(err)
  const transient = (cause: Exclude<FailureCause, 'permanent'>): Failure => ({ transient: true, cause, reason })
  const e = err as { code?: unknown, name?: unknown, failureCause?: RetryLaterError['failureCause'] } | undefined
  const name = typeof e?.name === 'string' ? e.name : ''
  if (name === 'RetryLaterError') return transient(e?.failureCause ?? 'timeout')
  if (mongoUnavailableErrors.has(name)) return transient('mongodb')
  if (mongoTimeoutErrors.has(name)) return transient('timeout')
  // insertMany wraps a lost connection into a bulk error that names no document: the batch never reached the server.
  if (name === 'MongoBulkWriteError' && [(err as { writeErrors?: unknown }).writeErrors ?? []].flat().length === 0 && mongoNetworkMessage.test(reason)) {
    return transient('mongodb')
  }
  const code = e?.code
  if (typeof code === 'number' && name.startsWith('Mongo')) {
    if (mongoTimeoutCodes.has(code)) return transient('timeout')
    if (mongoUnavailableCodes.has(code)) return transient('mongodb')
  }
  if (typeof code === 'string') {
    if (pgLock.has(code)) return transient('lock')
    if (code === '57014') return transient('timeout')
    if (pgUnavailable.has(code) || pgUnavailableClasses.has(code.slice(0, 2)) || networkCodes.has(code)) return transient('postgres')
  }
  if (pgConnectionMessage.test(reason)) return transient('postgres')
  return { transient: false, cause: 'permanent', reason }
}

/**
 * Rejects with a transient `timeout` failure when `work` has not settled within `ms` (the work itself goes on: callers
 * use it only for idempotent writes, so a late success is harmless).
 */
export async function withTimeout<T> (work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new RetryLaterError(`${what} timed out after ${ms} ms`, 'timeout')), ms)
  })
  try {
    return await Promise.race([work, timeout])
  } finally {
    clearTimeout(timer)
  }
}
