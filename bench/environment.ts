import { execFileSync } from 'node:child_process'
import { cpus, loadavg } from 'node:os'
import type { Queryable } from '../src/db.js'
import { round } from './stats.js'

/** The commit measured, marked when the working tree has uncommitted changes. */
export function gitCommit (): string | undefined {
  try {
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim()
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() !== ''
    return dirty ? `${head}+uncommitted` : head
  } catch {
    return undefined
  }
}

/** What every bench result records of the machine it ran on: Node, CPUs, load before and after, PostgreSQL, commit. */
export async function machineEnvironment (pool: Queryable, loadAtStart: number): Promise<Record<string, unknown>> {
  return {
    node: process.version,
    cpus: cpus().length,
    cpu_model: cpus()[0]?.model,
    load_1min_at_start: round(loadAtStart),
    load_1min_at_end: round(loadavg()[0]),
    postgres: (await pool.query('SHOW server_version')).rows[0].server_version as string,
    commit: gitCommit()
  }
}
