/** Latency samples (ms, fractional) and their percentiles. autocannon's own histogram keeps whole milliseconds. */
export class Samples {
  private values = new Float64Array(1 << 16)
  private n = 0

  add (ms: number): void {
    if (this.n === this.values.length) {
      const bigger = new Float64Array(this.values.length * 2)
      bigger.set(this.values)
      this.values = bigger
    }
    this.values[this.n++] = ms
  }

  get count (): number { return this.n }

  summary (): LatencySummary {
    return summarize(this.values.subarray(0, this.n))
  }
}

export interface LatencySummary { count: number, mean: number, p50: number, p90: number, p95: number, p99: number, p999: number, max: number }

/** Nearest-rank percentiles of the samples (sorted in place). */
export function summarize (values: Float64Array): LatencySummary {
  values.sort()
  const n = values.length
  const at = (q: number): number => n === 0 ? NaN : values[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]
  let sum = 0
  for (let i = 0; i < n; i++) sum += values[i]
  return { count: n, mean: n === 0 ? NaN : sum / n, p50: at(0.5), p90: at(0.9), p95: at(0.95), p99: at(0.99), p999: at(0.999), max: n === 0 ? NaN : values[n - 1] }
}

/** The median of the values (the mean of the middle two for an even count); undefined for none. */
export function median (values: number[]): number | undefined {
  if (values.length === 0) return undefined
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 === 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

export function round (value: number, digits = 2): number {
  if (!Number.isFinite(value)) return value
  const f = 10 ** digits
  return Math.round(value * f) / f
}

/** A plain text table with right-aligned numbers. */
export function textTable (header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((c, i) => i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i])).join('  ')
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function markdownTable (header: string[], rows: string[][]): string {
  const line = (cells: string[]): string => `| ${cells.join(' | ')} |`
  return [line(header), `|${header.map((_, i) => i === 0 ? '---' : '---:').join('|')}|`, ...rows.map(line)].join('\n')
}
