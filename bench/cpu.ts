import { readFileSync, readdirSync } from 'node:fs'

/** CPU time in ms of the service's main thread and of the local servers it talks to, by group. */
export type CpuSnapshot = Record<CpuGroup, number>
/** 'worker': the ROLE=worker process beside an in-process API (the service's too, shown apart). */
export type CpuGroup = 'service' | 'worker' | 'postgres' | 'rabbitmq' | 'redis'
/** CPU ms of each counted process (or 'self' for the bench's main thread) at one moment, with its group. */
export type CpuSample = Map<string, { group: CpuGroup, ms: number }>

const serverGroups: Record<string, CpuGroup> = { postgres: 'postgres', 'beam.smp': 'rabbitmq', 'redis-server': 'redis' }
// USER_HZ: 100 on every Linux architecture Node runs on.
const MS_PER_TICK = 10

/** The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [2] pgrp, [11] utime, [12] stime… */
function statFields (statPath: string): string[] {
  const stat = readFileSync(statPath, 'utf8')
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
}

/** utime + stime (+ the reaped children's, so exited PostgreSQL backends still count through the postmaster). */
function ticks (fields: string[], children: boolean): number {
  const own = Number(fields[11]) + Number(fields[12])
  return children ? own + Number(fields[13]) + Number(fields[14]) : own
}

/**
 * Reads /proc (Linux only; undefined elsewhere). Without `serviceGroup` the service is the bench's main thread alone:
 * autocannon runs in a worker thread of the same process, and its CPU is the load generator's, not the service's.
 * With it, the service is every thread of every process in that process group (a service started as a child in its
 * own group, its cluster workers included). `workerGroup`: a process group that counts as the service too (a
 * ROLE=worker process running the background work beside the bench's in-process API).
 */
export function cpuSnapshot (serviceGroup?: number, workerGroup?: number): CpuSample | undefined {
  try {
    const sample: CpuSample = new Map()
    if (serviceGroup === undefined) sample.set('self', { group: 'service', ms: ticks(statFields(`/proc/self/task/${process.pid}/stat`), false) * MS_PER_TICK })
    for (const pid of readdirSync('/proc')) {
      if (!/^\d+$/.test(pid)) continue
      try {
        const server = serverGroups[readFileSync(`/proc/${pid}/comm`, 'utf8').trim()]
        if (server === undefined && serviceGroup === undefined && workerGroup === undefined) continue
        const fields = statFields(`/proc/${pid}/stat`)
        if (server !== undefined) sample.set(pid, { group: server, ms: ticks(fields, true) * MS_PER_TICK })
        else if (Number(fields[2]) === serviceGroup) sample.set(pid, { group: 'service', ms: ticks(fields, false) * MS_PER_TICK })
        else if (Number(fields[2]) === workerGroup) sample.set(pid, { group: 'worker', ms: ticks(fields, false) * MS_PER_TICK })
      } catch {
        // The process ended between the listing and the read.
      }
    }
    return sample
  } catch {
    return undefined
  }
}

/**
 * CPU ms per request of each group between two samples. Compared process by process: one that started in between
 * counts from zero, one that ended in between is left out (a short-lived `rabbitmqctl` is a beam.smp too, and summing
 * totals would make its exit look like negative CPU).
 */
export function cpuPerRequest (before: CpuSample | undefined, after: CpuSample | undefined, requests: number): CpuSnapshot | undefined {
  if (before === undefined || after === undefined || requests === 0) return undefined
  const used: CpuSnapshot = { service: 0, worker: 0, postgres: 0, rabbitmq: 0, redis: 0 }
  for (const [pid, now] of after) {
    const then = before.get(pid)
    used[now.group] += now.ms - (then !== undefined && then.group === now.group ? then.ms : 0)
  }
  const per = (g: CpuGroup): number => used[g] / requests
  return { service: per('service'), worker: per('worker'), postgres: per('postgres'), rabbitmq: per('rabbitmq'), redis: per('redis') }
}
