import { spawn, type ChildProcess } from 'node:child_process'
import { openSync, closeSync, readFileSync, existsSync } from 'node:fs'
import { request, sleep } from './fault-traffic.js'
import { freePort } from './free-port.js'

/**
 * The fault run's hands: shell commands that stop and start the stores, and the service as a child in its own process
 * group (so that a kill -9 takes it whole, as a crash would), restarted by the harness as a supervisor would.
 */

export interface ShellResult { code: number | null, output: string }

/** Runs a shell command without blocking the event loop (the traffic keeps flowing meanwhile). */
export function sh (command: string, timeoutMs = 120_000): Promise<ShellResult> {
  return new Promise((resolve) => {
    const child = spawn('sh', ['-c', command], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.on('data', (d: Buffer) => { output += d.toString() })
    child.stderr.on('data', (d: Buffer) => { output += d.toString() })
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output: output.trim() })
    })
  })
}

export interface Store {
  name: 'postgres' | 'redis' | 'rabbitmq'
  stop: string
  start: string
}

/**
 * Stores that this run stopped and has not started again. restoreAll() starts them, and is called from the run's
 * finally block and from its signal handlers, so that a failing or interrupted run never leaves a shared service down.
 */
export class StoreControl {
  private readonly stopped = new Map<string, Store>()

  async stop (store: Store): Promise<ShellResult> {
    this.stopped.set(store.name, store)
    return await sh(store.stop)
  }

  async start (store: Store): Promise<ShellResult> {
    const result = await sh(store.start)
    if (result.code === 0) this.stopped.delete(store.name)
    return result
  }

  async restoreAll (log: (line: string) => void): Promise<boolean> {
    let ok = true
    for (const store of [...this.stopped.values()]) {
      log(`restarting ${store.name} (stopped by this run): ${store.start}`)
      const result = await this.start(store)
      if (result.code !== 0) {
        ok = false
        log(`could not restart ${store.name} (exit ${result.code}): ${result.output.slice(-500)}`)
      }
    }
    return ok
  }
}

/** A Node script (the service, or a bench server) in its own process group, its output appended to one log file across restarts. */
export class ServiceProcess {
  private child?: ChildProcess
  private exited?: Promise<void>
  generation = 0
  /** How the last process ended ("exit code 1", "signal SIGKILL"), undefined while it runs. */
  exitStatus?: string

  /** `cwd` is the repository: the service reads its migrations from ./migrations. */
  constructor (private readonly script: string, private readonly cwd: string, private readonly env: NodeJS.ProcessEnv, readonly logPath: string, readonly url: string) {}

  /** One on a free port of 127.0.0.1, handed to it in `portVariable`, its log in /tmp/<logName>-<port>.log. */
  static async onFreePort (script: string, cwd: string, env: NodeJS.ProcessEnv, portVariable: 'PORT' | 'WORKER_PORT', logName: string): Promise<ServiceProcess> {
    const port = await freePort()
    return new ServiceProcess(script, cwd, { ...env, HOST: '127.0.0.1', [portVariable]: String(port) }, `/tmp/${logName}-${port}.log`, `http://127.0.0.1:${port}`)
  }

  get pid (): number | undefined { return this.child?.pid }
  get alive (): boolean { return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null }

  start (): void {
    const fd = openSync(this.logPath, 'a')
    try {
      // BENCH_CPU_PROF=<dir>: each service process writes a V8 CPU profile there when it exits (node --cpu-prof).
      const profile = process.env.BENCH_CPU_PROF !== undefined ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []
      this.child = spawn(process.execPath, [...profile, this.script], { cwd: this.cwd, detached: true, stdio: ['ignore', fd, fd], env: this.env })
    } finally {
      closeSync(fd)
    }
    const child = this.child
    this.exitStatus = undefined
    this.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
      this.exitStatus = signal !== null ? `signal ${signal}` : `exit code ${code}`
      resolve()
    }))
    this.generation++
  }

  /** A crash: SIGKILL to the whole process group, nothing flushed, nothing closed. */
  async kill9 (): Promise<void> {
    if (this.child?.pid === undefined || !this.alive) return
    try { process.kill(-this.child.pid, 'SIGKILL') } catch {}
    await this.exited
  }

  /** A graceful stop (SIGTERM to the group), then SIGKILL if it has not exited within `graceMs`. */
  async stop (graceMs = 15_000): Promise<void> {
    if (this.child?.pid === undefined || !this.alive) return
    try { process.kill(-this.child.pid, 'SIGTERM') } catch {}
    const done = await Promise.race([this.exited!.then(() => true), sleep(graceMs).then(() => false)])
    if (!done) await this.kill9()
  }

  /** Polls /ready until it answers 200; the milliseconds it took, or undefined past `timeoutMs`. */
  async waitReady (timeoutMs: number): Promise<number | undefined> {
    const started = performance.now()
    while (performance.now() - started < timeoutMs) {
      if (this.child !== undefined && !this.alive) return undefined
      try {
        const answer = await request(this.url, 'GET', '/ready', {}, undefined, 1000)
        if (answer.status === 200) return performance.now() - started
      } catch {}
      await sleep(100)
    }
    return undefined
  }

  /** Waits until /health reports every dependency up; the names still down past `timeoutMs`. */
  async waitHealthy (timeoutMs: number): Promise<string[]> {
    const started = performance.now()
    let down = ['postgres', 'redis', 'mongodb', 'rabbitmq']
    while (performance.now() - started < timeoutMs) {
      try {
        const answer = await request(this.url, 'GET', '/health', {}, undefined, 2000)
        const json = JSON.parse(answer.text)
        down = ['postgres', 'redis', 'mongodb', 'rabbitmq'].filter((name) => json?.[name]?.status !== 'up')
        if (down.length === 0) return []
      } catch {}
      await sleep(250)
    }
    return down
  }

  tail (lines = 20): string {
    if (!existsSync(this.logPath)) return ''
    return readFileSync(this.logPath, 'utf8').trimEnd().split('\n').slice(-lines).join('\n')
  }
}
