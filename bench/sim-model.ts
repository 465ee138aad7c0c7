/**
 * The simulator's own ledger, in integer minor units (BigInt), following DESIGN §3-§5:
 *   available = ledger - pending holds; a hold moves money from available to pending; the first clearing of a hold
 *   posts its amount (less or more than held) and releases the rest; a further clearing, or a clearing without a pending
 *   hold, is a posted debit; a reversal releases at most what is left; a void releases everything left; refunds and
 *   loads credit; an immediate debit posts.
 * The simulator applies what the service answered (an approval of X is a hold of X); `predict` says what the service
 * should answer given this model, which is exact as long as one user's operations are not in flight concurrently.
 */

export type HoldState = 'PENDING' | 'POSTED' | 'VOIDED'

export interface Hold {
  /** The jit_funding token of the original authorization. */
  token: string
  userToken: string
  cardToken: string
  /** Held in total (the original and its incrementals). */
  amountMinor: bigint
  remainingMinor: bigint
  /** What the first clearing posted. */
  postedMinor: bigint
  incrementalTokens: string[]
  state: HoldState
  clearings: number
}

export interface Account { ledgerMinor: bigint, pendingMinor: bigint }

export interface Balances { availableMinor: bigint, ledgerMinor: bigint, pendingMinor: bigint }

export type Prediction =
  | { approve: true, amountMinor: bigint }
  | { approve: false, reason: 'INSUFFICIENT_FUNDS' | 'INVALID_AMOUNT' }

export class LedgerModel {
  readonly accounts = new Map<string, Account>()
  readonly holds = new Map<string, Hold>()

  addUser (userToken: string): void {
    if (!this.accounts.has(userToken)) this.accounts.set(userToken, { ledgerMinor: 0n, pendingMinor: 0n })
  }

  private account (userToken: string): Account {
    const account = this.accounts.get(userToken)
    if (account === undefined) throw new Error(`unknown user ${userToken}`)
    return account
  }

  balances (userToken: string): Balances {
    const a = this.account(userToken)
    return { availableMinor: a.ledgerMinor - a.pendingMinor, ledgerMinor: a.ledgerMinor, pendingMinor: a.pendingMinor }
  }

  /**
   * What a funds-checked request (authorization, incremental, immediate debit) should get. With partial approval
   * (server option, only for partial-capable messages) a short account may instead be approved for what it has.
   */
  predict (userToken: string, amountMinor: bigint | undefined): Prediction {
    if (amountMinor === undefined || amountMinor <= 0n) return { approve: false, reason: 'INVALID_AMOUNT' }
    const { availableMinor } = this.balances(userToken)
    if (availableMinor >= amountMinor) return { approve: true, amountMinor }
    return { approve: false, reason: 'INSUFFICIENT_FUNDS' }
  }

  /** Admin load, refund, any credit. */
  credit (userToken: string, amountMinor: bigint): void {
    this.account(userToken).ledgerMinor += amountMinor
  }

  /** Immediate (posted) debit: auth_plus_capture, a clearing without a pending hold. */
  debit (userToken: string, amountMinor: bigint): void {
    this.account(userToken).ledgerMinor -= amountMinor
  }

  /** An approved authorization of `approvedMinor`. */
  hold (token: string, userToken: string, cardToken: string, approvedMinor: bigint): Hold {
    if (this.holds.has(token)) throw new Error(`hold ${token} exists`)
    const h: Hold = { token, userToken, cardToken, amountMinor: approvedMinor, remainingMinor: approvedMinor, postedMinor: 0n, incrementalTokens: [], state: 'PENDING', clearings: 0 }
    this.account(userToken).pendingMinor += approvedMinor
    this.holds.set(token, h)
    return h
  }

  /** An approved incremental authorization on the pending hold `holdToken`. */
  increment (holdToken: string, incrementalToken: string, approvedMinor: bigint): void {
    const h = this.pendingHold(holdToken)
    h.amountMinor += approvedMinor
    h.remainingMinor += approvedMinor
    h.incrementalTokens.push(incrementalToken)
    this.account(h.userToken).pendingMinor += approvedMinor
  }

  /**
   * A clearing of `amountMinor` against the hold: the first one posts it and releases whatever is left of the hold;
   * a later one is a plain posted debit. Returns what was released from the hold.
   */
  clear (holdToken: string, amountMinor: bigint): bigint {
    const h = this.holds.get(holdToken)
    if (h === undefined) throw new Error(`no hold ${holdToken}`)
    const account = this.account(h.userToken)
    h.clearings++
    account.ledgerMinor -= amountMinor
    if (h.state !== 'PENDING') return 0n
    const released = h.remainingMinor
    account.pendingMinor -= released
    h.remainingMinor = 0n
    h.postedMinor = amountMinor
    h.state = 'POSTED'
    return released
  }

  /** A (partial) reversal: releases at most what is left. Returns the released amount. */
  release (holdToken: string, amountMinor: bigint): bigint {
    const h = this.holds.get(holdToken)
    if (h === undefined || h.state !== 'PENDING') return 0n
    const released = amountMinor < h.remainingMinor ? amountMinor : h.remainingMinor
    h.remainingMinor -= released
    this.account(h.userToken).pendingMinor -= released
    if (h.remainingMinor === 0n) h.state = 'VOIDED'
    return released
  }

  /** Timed-out answer or a later decline reported by a webhook: the whole hold goes. */
  void (holdToken: string): bigint {
    const h = this.holds.get(holdToken)
    if (h === undefined || h.state !== 'PENDING') return 0n
    return this.release(holdToken, h.remainingMinor)
  }

  pendingHolds (): Hold[] {
    return [...this.holds.values()].filter((h) => h.state === 'PENDING')
  }

  private pendingHold (token: string): Hold {
    const h = this.holds.get(token)
    if (h === undefined || h.state !== 'PENDING') throw new Error(`hold ${token} is not pending`)
    return h
  }
}

/** Zipf(s) over n ranks: rank 0 is the most frequent. Sampled by binary search over the cumulative weights. */
export class Zipf {
  private readonly cdf: Float64Array

  constructor (n: number, s: number) {
    if (n < 1) throw new Error('Zipf needs at least one rank')
    this.cdf = new Float64Array(n)
    let total = 0
    for (let k = 0; k < n; k++) {
      total += 1 / Math.pow(k + 1, s)
      this.cdf[k] = total
    }
    for (let k = 0; k < n; k++) this.cdf[k] /= total
  }

  sample (random: () => number): number {
    const u = random()
    let lo = 0
    let hi = this.cdf.length - 1
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.cdf[mid] < u) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

/** A small seeded PRNG (mulberry32), so that a run can be repeated with --seed. */
export function seededRandom (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
