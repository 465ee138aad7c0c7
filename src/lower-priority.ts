import { readdirSync } from 'node:fs'
import { getPriority, setPriority } from 'node:os'

/**
 * Raises this process's nice value by `by` (at most 19). On Linux a nice value belongs to a thread, and V8's and
 * libuv's threads already exist: each is set through /proc/self/task; threads started later inherit it.
 */
export function lowerPriority (by: number): void {
  const target = Math.min(getPriority() + by, 19)
  let threads: number[]
  try {
    threads = readdirSync('/proc/self/task').map(Number)
  } catch {
    threads = [0]
  }
  for (const tid of threads) {
    try {
      setPriority(tid, target)
    } catch {
      // A thread that ended meanwhile.
    }
  }
}
