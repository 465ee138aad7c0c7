import { readFileSync, readdirSync } from 'node:fs'

/** CPU time in ms of the service's main thread and of the local servers it talks to, by group. */
export type CpuSnapshot = Record<CpuGroup, number>
export type CpuGroup = 'service' | 'postgres' | 'rabbitmq' | 'redis'

const serverGroups: Record<string, CpuGroup> = { postgres: 'postgres', 'beam.smp': 'rabbitmq', 'redis-server': 'redis' }
// USER_HZ: 100 on every Linux architecture Node runs on.
const MS_PER_TICK = 10

/** utime + stime (+ the reaped children's, so exited PostgreSQL backends still count through the postmaster). */
function ticks (statPath: string, children: boolean): number {
  const stat = readFileSync(statPath, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const own = Number(fields[11]) + Number(fields[12])
  return children ? own + Number(fields[13]) + Number(fields[14]) : own
}

/**
 * Reads /proc (Linux only; undefined elsewhere). The service is the bench's main thread alone: autocannon runs in a
 * worker thread of the same process, and its CPU is the load generator's, not the service's.
 */
export function cpuSnapshot (): CpuSnapshot | undefined {
  try {
    const snapshot: CpuSnapshot = { service: ticks(`/proc/self/task/${process.pid}/stat`, false) * MS_PER_TICK, postgres: 0, rabbitmq: 0, redis: 0 }
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        const group = serverGroups[readFileSync(`/proc/${pid}/comm`, 'utf8').trim()]
        if (group !== undefined) snapshot[group] += ticks(`/proc/${pid}/stat`, true) * MS_PER_TICK
      } catch {
        // The process ended between the listing and the read.
      }
    }
    return snapshot
  } catch {
    return undefined
  }
}

/** CPU ms per request of each group between two snapshots. */
export function cpuPerRequest (before: CpuSnapshot | undefined, after: CpuSnapshot | undefined, requests: number): CpuSnapshot | undefined {
  if (before === undefined || after === undefined || requests === 0) return undefined
  const per = (g: CpuGroup): number => (after[g] - before[g]) / requests
  return { service: per('service'), postgres: per('postgres'), rabbitmq: per('rabbitmq'), redis: per('redis') }
}
