import type { VelocityControlRow } from './context.js'

/**
 * Start of a velocity window at `now`, in UTC (Marqeta's model): DAY from 00:00, WEEK from Sunday 00:00, MONTH from
 * the 1st, LIFETIME from the control's creation. TRANSACTION is a per-transaction cap and has no window.
 */
export function windowStart (control: Pick<VelocityControlRow, 'velocity_window' | 'created_time'>, now: Date): Date | undefined {
  const day = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate())
  switch (control.velocity_window) {
    case 'DAY': return new Date(day)
    case 'WEEK': return new Date(day - now.getUTCDay() * 86_400_000)
    case 'MONTH': return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1))
    case 'LIFETIME': return new Date(control.created_time)
    case 'TRANSACTION': return undefined
  }
}
