import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
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
    postgres_malloc: await postgresMallocTunables(pool),
    commit: gitCommit()
  }
}

/**
 * The glibc malloc tunables PostgreSQL's backends run with (ops/README.md, "PostgreSQL's allocator"), read from a
 * backend's environment when PostgreSQL runs on this machine and its /proc entry is readable. glibc (2.36) leaves only
 * the first of several tunables visible there once it has read them.
 */
async function postgresMallocTunables (pool: Queryable): Promise<string> {
  const pid = (await pool.query('SELECT pg_backend_pid() AS pid')).rows[0].pid as number
  try {
    if (readFileSync(`/proc/${pid}/comm`, 'latin1').trim() !== 'postgres') return 'unknown (PostgreSQL runs elsewhere)'
    // GLIBC_TUNABLES, or the older MALLOC_*_ variables glibc still reads.
    const tunables = readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').filter((v) => /^(GLIBC_TUNABLES|MALLOC_[A-Z_]+_)=/.test(v))
    return tunables.length === 0 ? 'no malloc tunables in its environment' : tunables.join(' ')
  } catch {
    return 'unknown (not readable from here)'
  }
}
