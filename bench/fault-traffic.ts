import { createHmac, randomBytes } from 'node:crypto'
import type pg from 'pg'
import { developmentSecrets } from '../src/config.js'
import { basicAuth, decimalText, jitMessage, merchants, webhookTransaction } from './messages.js'

/**
 * The fault run's own traffic, next to the simulator's: every request is recorded with the answer Marqeta would have
 * received, so that after a fault each answer can be replayed (same status, same bytes), each accepted webhook looked
 * up by its effect key (applied exactly once, for the right amount) and each decision's archive checked. Marqeta's
 * behaviour is copied where it matters: a JIT request is sent once and waited for 3 s; a webhook is resent until it
 * gets a 200.
 */

export interface Credentials {
  admin: string
  jit: Record<string, string>
  webhook: (body: string) => Record<string, string>
}

export function credentialsFromEnv (env: NodeJS.ProcessEnv = process.env): Credentials {
  const jit: Record<string, string> = {
    'content-type': 'application/json',
    authorization: basicAuth(env.JIT_BASIC_AUTH_USER ?? developmentSecrets.JIT_BASIC_AUTH_USER, env.JIT_BASIC_AUTH_PASSWORD ?? developmentSecrets.JIT_BASIC_AUTH_PASSWORD)
  }
  if (env.JIT_CUSTOM_HEADER_NAME !== undefined && env.JIT_CUSTOM_HEADER_VALUE !== undefined) jit[env.JIT_CUSTOM_HEADER_NAME.toLowerCase()] = env.JIT_CUSTOM_HEADER_VALUE
  const webhookAuth = basicAuth(env.WEBHOOK_BASIC_AUTH_USER ?? developmentSecrets.WEBHOOK_BASIC_AUTH_USER, env.WEBHOOK_BASIC_AUTH_PASSWORD ?? developmentSecrets.WEBHOOK_BASIC_AUTH_PASSWORD)
  const secret = env.WEBHOOK_SECRET
  const algorithm = env.WEBHOOK_SIGNATURE_ALGORITHM === 'sha1' ? 'sha1' : 'sha256'
  return {
    admin: env.ADMIN_TOKEN ?? developmentSecrets.ADMIN_TOKEN,
    jit,
    webhook: (body) => ({
      'content-type': 'application/json',
      authorization: webhookAuth,
      ...(secret !== undefined ? { 'x-marqeta-signature': createHmac(algorithm, secret).update(body).digest('hex') } : {})
    })
  }
}

export interface HttpAnswer { status: number, text: string }

export async function request (baseUrl: string, method: string, path: string, headers: Record<string, string>, body?: string, timeoutMs = 10_000): Promise<HttpAnswer> {
  const res = await fetch(new URL(path, baseUrl), { method, headers, body, signal: AbortSignal.timeout(timeoutMs) })
  return { status: res.status, text: await res.text() }
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** A JIT answer Marqeta received: a decision (200 or 402), which every replay must give back byte for byte. */
export interface AnsweredJit {
  token: string
  body: string
  status: number
  text: string
  /** Seconds into the phase. */
  at: number
  /** Which process lifetime answered it (the kill fault starts a second one). */
  generation: number
}

export interface AcceptedWebhook {
  kind: 'post' | 'void'
  effectKey: string
  /** The hold it settles or voids. */
  holdToken: string
  amountMinor: bigint
  /** Seconds into the phase of the first send and of the 200. */
  firstSentAt: number
  acceptedAt: number
  attempts: number
}

interface OpenHold { token: string, user: string, card: string, amountMinor: bigint }

const USERS = 12
const INITIAL_LOAD_MINOR = 5_000_000n

export class TrackedTraffic {
  readonly answered: AnsweredJit[] = []
  readonly accepted: AcceptedWebhook[] = []
  /** Every attempt, by what came back: an HTTP status or the transport error. */
  readonly outcomes: Record<string, number> = {}
  /** Webhooks never accepted before the resend window closed (Marqeta would keep trying for days). */
  readonly unaccepted: string[] = []
  sent = 0
  generation = 0
  private readonly users: Array<{ user: string, card: string }> = []
  private readonly open: OpenHold[] = []
  private readonly inFlight = new Set<Promise<void>>()
  private readonly prefix = `f${randomBytes(3).toString('hex')}`
  private seq = 0
  private t0 = performance.now()
  private timer?: NodeJS.Timeout
  private resendUntil = Infinity

  constructor (private readonly baseUrl: string, private readonly creds: Credentials) {}

  private now (): number { return (performance.now() - this.t0) / 1000 }
  private token (kind: string): string { return `${this.prefix}${kind}${(this.seq++).toString(36)}` }
  private count (key: string): void { this.outcomes[key] = (this.outcomes[key] ?? 0) + 1 }

  /** Users with cards and a large load, through the admin API. */
  async setup (): Promise<void> {
    const admin = { 'content-type': 'application/json', authorization: `Bearer ${this.creds.admin}` }
    for (let i = 0; i < USERS; i++) {
      const user = `${this.prefix}u${i}`
      const card = `${this.prefix}c${i}`
      const steps: Array<[string, string, Record<string, string>, number]> = [
        ['/v1/users', JSON.stringify({ token: user, first_name: 'Fault', last_name: user }), admin, 201],
        ['/v1/cards', JSON.stringify({ token: card, user_token: user }), admin, 201],
        [`/v1/users/${user}/loads`, JSON.stringify({ amount: decimalText(INITIAL_LOAD_MINOR), currency_code: 'USD' }), { ...admin, 'idempotency-key': `${user}-load` }, 201]
      ]
      for (const [path, body, headers, want] of steps) {
        const answer = await request(this.baseUrl, 'POST', path, headers, body)
        if (answer.status !== want) throw new Error(`setup ${path}: expected ${want}, got ${answer.status} ${answer.text.slice(0, 200)}`)
      }
      this.users.push({ user, card })
    }
  }

  /** Starts a new phase: fresh counters, the clock at 0. Earlier phases' records stay in the caller's hands. */
  begin (): void {
    this.answered.length = 0
    this.accepted.length = 0
    this.unaccepted.length = 0
    for (const k of Object.keys(this.outcomes)) delete this.outcomes[k]
    this.sent = 0
    this.resendUntil = Infinity
    this.t0 = performance.now()
  }

  /** Open-loop sends at `rate` per second until stop(). */
  start (rate: number): void {
    const interval = 1000 / rate
    let i = 0
    const started = performance.now()
    const tick = (): void => {
      while (started + i * interval <= performance.now()) {
        i++
        this.sent++
        const work = this.next().catch((err: Error) => { this.count(`bug: ${err.message}`) })
        this.inFlight.add(work)
        void work.finally(() => this.inFlight.delete(work))
      }
      this.timer = setTimeout(tick, Math.max(1, started + i * interval - performance.now()))
    }
    tick()
  }

  /** Stops sending; webhooks not yet accepted are resent for up to `resendForMs` more, as Marqeta would. */
  async stop (resendForMs: number): Promise<void> {
    clearTimeout(this.timer)
    this.resendUntil = performance.now() + resendForMs
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight])
  }

  private async next (): Promise<void> {
    const r = Math.random()
    if (r < 0.4 && this.open.length > 0) {
      const hold = this.open.splice(Math.floor(Math.random() * this.open.length), 1)[0]
      return r < 0.3 ? this.clearing(hold) : this.timedOut(hold)
    }
    return this.authorize()
  }

  private async authorize (): Promise<void> {
    const { user, card } = this.users[Math.floor(Math.random() * this.users.length)]
    const token = this.token('j')
    const amountMinor = BigInt(100 + Math.floor(Math.random() * 9900))
    const body = JSON.stringify(jitMessage({
      method: 'pgfs.authorization', jitToken: token, transactionToken: this.token('t'), userToken: user, cardToken: card,
      amountMinor, merchant: merchants[this.seq % merchants.length]
    }))
    const at = this.now()
    const generation = this.generation
    let answer: HttpAnswer
    try {
      answer = await request(this.baseUrl, 'POST', '/marqeta/jit', this.creds.jit, body, 3000)
    } catch (err) {
      this.count(`jit ${errorName(err)}`)
      return
    }
    this.count(`jit ${answer.status}`)
    if (answer.status !== 200 && answer.status !== 402) return
    this.answered.push({ token, body, status: answer.status, text: answer.text, at, generation })
    if (answer.status === 200) this.open.push({ token, user, card, amountMinor })
  }

  /** A clearing of the whole hold, reported by webhook under its own JIT token: effect `<capture token>:post`. */
  private async clearing (hold: OpenHold): Promise<void> {
    const jitToken = this.token('p')
    const item = webhookTransaction({
      method: 'pgfs.authorization.capture', jitToken, transactionToken: this.token('t'), userToken: hold.user, cardToken: hold.card,
      amountMinor: hold.amountMinor, originalJitToken: hold.token, type: 'authorization.clearing', state: 'COMPLETION'
    })
    await this.deliver({ kind: 'post', effectKey: `${jitToken}:post`, holdToken: hold.token, amountMinor: hold.amountMinor }, item)
  }

  /** Marqeta's report that our answer came too late: the hold is voided, effect `<hold token>:void`. */
  private async timedOut (hold: OpenHold): Promise<void> {
    const item = webhookTransaction({
      method: 'pgfs.authorization', jitToken: hold.token, transactionToken: this.token('t'), userToken: hold.user, cardToken: hold.card,
      amountMinor: hold.amountMinor, type: 'authorization', state: 'DECLINED', timedOut: true
    })
    await this.deliver({ kind: 'void', effectKey: `${hold.token}:void`, holdToken: hold.token, amountMinor: hold.amountMinor }, item)
  }

  private async deliver (what: Omit<AcceptedWebhook, 'firstSentAt' | 'acceptedAt' | 'attempts'>, item: Record<string, unknown>): Promise<void> {
    const body = JSON.stringify({ transactions: [item] })
    const firstSentAt = this.now()
    for (let attempts = 1; ; attempts++) {
      try {
        const answer = await request(this.baseUrl, 'POST', '/marqeta/webhooks', this.creds.webhook(body), body, 5000)
        this.count(`webhook ${answer.status}`)
        if (answer.status === 200) {
          this.accepted.push({ ...what, firstSentAt, acceptedAt: this.now(), attempts })
          return
        }
      } catch (err) {
        this.count(`webhook ${errorName(err)}`)
      }
      if (performance.now() > this.resendUntil) {
        this.unaccepted.push(`${what.kind} ${what.effectKey}`)
        return
      }
      await sleep(1000)
    }
  }
}

function errorName (err: unknown): string {
  const e = err as Error & { cause?: { code?: string } }
  if (e.name === 'TimeoutError') return 'timeout'
  return e.cause?.code ?? e.name ?? 'error'
}

export interface CheckResult { checked: number, failures: string[], notes: string[] }

/** Every recorded answer, asked again: same status and the same bytes. */
export async function replayAnswers (baseUrl: string, creds: Credentials, answers: AnsweredJit[]): Promise<CheckResult> {
  const failures: string[] = []
  await inParallel(answers, 8, async (a) => {
    let answer: HttpAnswer | undefined
    for (let attempt = 0; attempt < 3 && answer === undefined; attempt++) {
      try { answer = await request(baseUrl, 'POST', '/marqeta/jit', creds.jit, a.body, 3000) } catch { await sleep(500) }
    }
    if (answer === undefined) failures.push(`replay ${a.token}: no answer`)
    else if (answer.status !== a.status || answer.text !== a.text) {
      failures.push(`replay ${a.token} (answered at +${a.at.toFixed(1)} s): first ${a.status} ${a.text.slice(0, 100)}, now ${answer.status} ${answer.text.slice(0, 100)}`)
    }
  })
  return { checked: answers.length, failures, notes: [] }
}

/**
 * Each accepted webhook's effect, found in the ledger (transfers, hold_states): its transfer under its key (the id is
 * the exactly-once key), the hold it settles or voids resolved, and the hold's transfers releasing exactly what was
 * held, once (a clearing posts its amount and releases the hold; a void releases the whole hold). Waits until
 * `deadline` for effects still queued.
 */
export async function checkWebhooks (pool: pg.Pool, accepted: AcceptedWebhook[], deadline: number): Promise<CheckResult> {
  const failures: string[] = []
  let pending = accepted
  let last = new Map<string, string>()
  for (;;) {
    const { rows } = await pool.query<{ effect_key: string, kind: string | null, amount: string, hold_status: string | null, held: string | null, posted: string | null, released: string }>(
      `SELECT k.key AS effect_key, t.kind, t.amount::text, h.status AS hold_status, h.amount::text AS held, h.posted::text,
              (SELECT coalesce(sum(r.released), 0) FROM transfers r WHERE r.hold_jit_token = k.hold AND r.kind IN ('post', 'void'))::text AS released
         FROM unnest($1::text[], $2::text[]) k(key, hold)
         LEFT JOIN transfers t ON t.id = k.key
         LEFT JOIN hold_states h ON h.jit_token = k.hold`, [pending.map((w) => w.effectKey), pending.map((w) => w.holdToken)])
    const byKey = new Map(rows.map((r) => [r.effect_key, r]))
    last = new Map()
    const still: AcceptedWebhook[] = []
    for (const w of pending) {
      const r = byKey.get(w.effectKey)
      if (r?.kind === undefined || r.kind === null) { still.push(w); continue }
      const want = w.kind === 'post' ? { kind: 'post', status: 'POSTED', posted: w.amountMinor } : { kind: 'void', status: 'VOIDED', posted: 0n }
      const problems: string[] = []
      if (r.kind !== want.kind) problems.push(`its transfer is a ${r.kind}, expected a ${want.kind}`)
      if (w.kind === 'post' && BigInt(r.amount) !== w.amountMinor) problems.push(`posted ${r.amount} minor units, expected ${w.amountMinor}`)
      if (r.hold_status !== want.status) problems.push(`hold ${w.holdToken} is ${r.hold_status ?? 'missing'}, expected ${want.status}`)
      else if (BigInt(r.posted ?? '0') !== want.posted) problems.push(`hold ${w.holdToken} posted ${r.posted}, expected ${want.posted}`)
      if (r.held !== null && BigInt(r.released) !== BigInt(r.held)) problems.push(`hold ${w.holdToken} of ${r.held} released ${r.released} in all (applied more or less than once)`)
      if (problems.length > 0) last.set(w.effectKey, problems.join('; '))
    }
    pending = still
    if (pending.length === 0 || Date.now() > deadline) break
    await sleep(500)
  }
  for (const w of pending) failures.push(`webhook ${w.kind} ${w.effectKey} (hold ${w.holdToken}, first sent +${w.firstSentAt.toFixed(1)} s, accepted +${w.acceptedAt.toFixed(1)} s after ${w.attempts} attempt(s)) was answered 200 but never applied`)
  for (const [key, problem] of last) failures.push(`webhook ${key}: ${problem}`)
  return { checked: accepted.length, failures, notes: [] }
}

/**
 * Each decision's archive through GET /v1/transactions/:token: its JIT message, plus the timed-out webhook that
 * carries the same token. Waits until `deadline`. `lost` tokens (answered by a process later killed, whose embedded
 * MongoDB died with it) are counted apart and do not fail the check.
 */
export async function checkArchive (baseUrl: string, creds: Credentials, answers: AnsweredJit[], accepted: AcceptedWebhook[], deadline: number, lostOk: (a: AnsweredJit) => boolean = () => false): Promise<CheckResult & { lost: number }> {
  const admin = { authorization: `Bearer ${creds.admin}` }
  const voids = new Set(accepted.filter((w) => w.kind === 'void').map((w) => w.holdToken))
  const want = (a: AnsweredJit): number => 1 + (voids.has(a.token) ? 1 : 0)
  let pending = answers
  const last = new Map<string, string>()
  for (;;) {
    const still: AnsweredJit[] = []
    await inParallel(pending, 8, async (a) => {
      try {
        const answer = await request(baseUrl, 'GET', `/v1/transactions/${a.token}`, admin)
        const json = answer.status === 200 ? JSON.parse(answer.text) : undefined
        const n = Array.isArray(json?.archived) ? json.archived.length : 0
        if (n >= want(a)) return
        last.set(a.token, answer.status !== 200 ? `GET answered ${answer.status}` : `${n} archived message(s) (archive ${json.archive_status}), expected ${want(a)}`)
      } catch (err) {
        last.set(a.token, `GET failed: ${(err as Error).message}`)
      }
      still.push(a)
    })
    pending = still
    if (pending.length === 0 || Date.now() > deadline) break
    await sleep(1000)
  }
  const failures: string[] = []
  let lost = 0
  for (const a of pending) {
    if (lostOk(a)) lost++
    else failures.push(`archive of ${a.token} (answered ${a.status} at +${a.at.toFixed(1)} s): ${last.get(a.token)}`)
  }
  return { checked: answers.length, failures, notes: [], lost }
}

async function inParallel<T> (items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++])
  }))
}
