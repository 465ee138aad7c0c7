import { build, type Histogram } from 'hdr-histogram-js'

const histogram = (): Histogram => build({ numberOfSignificantValueDigits: 3, useWebAssembly: false })

/**
 * Percentiles of the values recorded over the last `windowMs`, kept in `slots` HDR histograms that take turns (the
 * oldest slot is cleared when its turn comes back), so recording is a bucket increment and the percentiles are
 * computed only when asked. Values are integers (microseconds here); HDR keeps 3 significant digits.
 */
export class SlidingPercentiles {
  private readonly slots: Array<{ epoch: number, histogram: Histogram }>
  private readonly slotMs: number

  constructor (windowMs: number, slots: number, private readonly now: () => number = Date.now) {
    this.slotMs = windowMs / slots
    this.slots = Array.from({ length: slots }, () => ({ epoch: -1, histogram: histogram() }))
  }

  record (value: number): void {
    const epoch = Math.floor(this.now() / this.slotMs)
    const slot = this.slots[epoch % this.slots.length]
    if (slot.epoch !== epoch) {
      slot.histogram.reset()
      slot.epoch = epoch
    }
    slot.histogram.recordValue(Math.max(0, Math.round(value)))
  }

  /** The values at these percentiles (0-100) over the window; null when it holds no value. */
  percentiles (percentiles: number[]): Array<number | null> {
    const epoch = Math.floor(this.now() / this.slotMs)
    const merged = histogram()
    for (const slot of this.slots) if (slot.epoch > epoch - this.slots.length) merged.add(slot.histogram)
    const values = merged.totalCount === 0 ? percentiles.map(() => null) : percentiles.map((p) => merged.getValueAtPercentile(p))
    merged.destroy()
    return values
  }
}
