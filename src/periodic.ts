import type { Logger } from './broker.js'

/**
 * Runs a background task every `intervalMs`, the first time one interval after start; runs never overlap, a failed
 * run is logged and the next one comes on schedule. stop() waits for the run in progress.
 */
export class Periodic {
  private timer?: NodeJS.Timeout
  private running?: Promise<void>
  private stopped = true

  constructor (private readonly name: string, private readonly intervalMs: number, private readonly task: () => Promise<void>, private readonly log: Logger) {}

  start (): void {
    if (!this.stopped) return
    this.stopped = false
    this.schedule()
  }

  private schedule (): void {
    if (this.stopped) return
    this.timer = setTimeout(() => this.run(), this.intervalMs)
    this.timer.unref()
  }

  private run (): void {
    if (this.stopped) return
    this.running = this.task().catch((err) => {
      this.log.warn({ err: (err as Error).message, task: this.name }, `${this.name} failed; next run in ${this.intervalMs} ms`)
    }).finally(() => {
      this.running = undefined
      this.schedule()
    })
  }

  async stop (): Promise<void> {
    this.stopped = true
    clearTimeout(this.timer)
    await this.running
  }
}
