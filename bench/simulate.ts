/**
 * `npm run simulate -- --users N --cards N --rate R --duration S --url U` — a Marqeta traffic simulator against a
 * running service (127.0.0.1 only). Open loop: sends are scheduled on a fixed interval whatever the answers' latency
 * (unlike autocannon, which bursts at each second boundary or waits for answers). Users, cards and loads are created
 * through the admin API; then realistic lifecycles on Zipf-distributed cards: authorizations (some tiny, some invalid),
 * incrementals, clearings smaller/equal/larger than the hold (at the gateway, or as webhooks when that route exists),
 * second clearings, partial and full reversals, issuer expirations, refunds, immediate debits, balance inquiries,
 * replays of earlier tokens (alone and concurrently), admin top-ups with replayed Idempotency-Keys, and timed-out
 * answers reported by webhook. The simulator keeps its own ledger in BigInt minor units (bench/sim-model.ts), checks
 * every answer it can predict, reconciles every user's balances at the end, runs the ledger audit, and exits 1 on
 * any difference.
 *
 * Other options: --seed N (repeatable run), --zipf S (default 1.1), --load AMOUNT (initial load per user, default
 * 500.00), --max-in-flight N (default 256), --settle-timeout S (wait for webhook effects, default 30), --no-webhooks,
 * --database-url URL (the service's database, for the ledger audit; default $DATABASE_URL).
 * Credentials: ADMIN_TOKEN, JIT_BASIC_AUTH_USER/PASSWORD, WEBHOOK_BASIC_AUTH_USER/PASSWORD, WEBHOOK_SECRET from the
 * environment, else the development values of src/config.ts.
 */
import { parseArgs } from 'node:util'
import { randomBytes, createHmac } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import cliProgress from 'cli-progress'
import { developmentSecrets, redactUrl } from '../src/config.js'
import { LedgerModel, Zipf, seededRandom, type Hold, type Prediction } from './sim-model.js'
import { basicAuth, decimalText, jitMessage, merchants, toMinor, webhookTransaction, type JitMessage } from './messages.js'
import { Samples, round, textTable, type LatencySummary } from './stats.js'

const { values: args } = parseArgs({
  options: {
    users: { type: 'string', default: '50' },
    cards: { type: 'string' },
    rate: { type: 'string', default: '50' },
    duration: { type: 'string', default: '20' },
    url: { type: 'string', default: 'http://127.0.0.1:3000' },
    seed: { type: 'string' },
    zipf: { type: 'string', default: '1.1' },
    load: { type: 'string', default: '500.00' },
    'max-in-flight': { type: 'string', default: '256' },
    'settle-timeout': { type: 'string', default: '30' },
    'no-webhooks': { type: 'boolean', default: false },
    'database-url': { type: 'string' }
  }
})

const userCount = Number(args.users)
const cardCount = Math.max(userCount, Number(args.cards ?? userCount * 2))
const rate = Number(args.rate)
const durationS = Number(args.duration)
const zipfS = Number(args.zipf)
const initialLoadMinor = toMinor(args.load!)
const maxInFlight = Number(args['max-in-flight'])
const settleTimeoutS = Number(args['settle-timeout'])
const seed = args.seed !== undefined ? Number(args.seed) : randomBytes(4).readUInt32LE(0)
const baseUrl = new URL(args.url!)
for (const [name, value] of Object.entries({ users: userCount, rate, duration: durationS, zipf: zipfS, 'max-in-flight': maxInFlight })) {
  if (!Number.isFinite(value) || value <= 0) fail(`--${name} must be a positive number`)
}
if (!['127.0.0.1', 'localhost', '[::1]'].includes(baseUrl.hostname)) fail(`--url must point at this machine (127.0.0.1), not ${baseUrl.hostname}`)
if (durationS > 3600) fail('--duration is capped at 3600 s')

const env = process.env
const creds = {
  admin: env.ADMIN_TOKEN ?? developmentSecrets.ADMIN_TOKEN,
  jitUser: env.JIT_BASIC_AUTH_USER ?? developmentSecrets.JIT_BASIC_AUTH_USER,
  jitPassword: env.JIT_BASIC_AUTH_PASSWORD ?? developmentSecrets.JIT_BASIC_AUTH_PASSWORD,
  webhookUser: env.WEBHOOK_BASIC_AUTH_USER ?? developmentSecrets.WEBHOOK_BASIC_AUTH_USER,
  webhookPassword: env.WEBHOOK_BASIC_AUTH_PASSWORD ?? developmentSecrets.WEBHOOK_BASIC_AUTH_PASSWORD,
  webhookSecret: env.WEBHOOK_SECRET,
  webhookAlgorithm: env.WEBHOOK_SIGNATURE_ALGORITHM === 'sha1' ? 'sha1' : 'sha256'
}
const jitHeaders: Record<string, string> = { 'content-type': 'application/json', authorization: basicAuth(creds.jitUser, creds.jitPassword) }
if (env.JIT_CUSTOM_HEADER_NAME !== undefined && env.JIT_CUSTOM_HEADER_VALUE !== undefined) jitHeaders[env.JIT_CUSTOM_HEADER_NAME.toLowerCase()] = env.JIT_CUSTOM_HEADER_VALUE
const adminHeaders = { 'content-type': 'application/json', authorization: `Bearer ${creds.admin}` }

function fail (message: string): never {
  console.error(`simulate: ${message}`)
  process.exit(2)
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

interface Answer { status: number, text: string, json: any, ms: number }

async function call (method: string, path: string, headers: Record<string, string>, body?: string): Promise<Answer> {
  const started = performance.now()
  const res = await fetch(new URL(path, baseUrl), { method, headers, body, signal: AbortSignal.timeout(10_000) })
  const text = await res.text()
  const ms = performance.now() - started
  let json: any
  try { json = text === '' ? undefined : JSON.parse(text) } catch { json = undefined }
  return { status: res.status, text, json, ms }
}

/**
 * Retries a request on a network error or a 5xx, for up to RETRY_FOR_MS: JIT tokens and Idempotency-Keys make every
 * retry safe, and the user stays locked meanwhile, so that the model learns the outcome before that user's next
 * operation (a request without an answer may still have been applied).
 */
const RETRY_FOR_MS = 60_000
async function callSafely (kind: string, method: string, path: string, headers: Record<string, string>, body?: string): Promise<(Answer & { attempts: number }) | undefined> {
  const started = performance.now()
  for (let attempt = 1; ; attempt++) {
    try {
      const answer = await call(method, path, headers, body)
      latency(kind).add(answer.ms)
      if (answer.status < 500) return { ...answer, attempts: attempt }
      count(stats.errors, `${kind}: HTTP ${answer.status}`)
    } catch (err) {
      count(stats.errors, `${kind}: ${(err as Error).name === 'TimeoutError' ? 'timeout' : (err as Error).message}`)
    }
    if (performance.now() - started > RETRY_FOR_MS) return undefined
    await sleep(Math.min(2000, 100 * 2 ** attempt))
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

// ---------------------------------------------------------------------------------------------------------------
// Bookkeeping

const stats = {
  actions: {} as Record<string, number>,
  statuses: {} as Record<string, number>,
  declineReasons: {} as Record<string, number>,
  errors: {} as Record<string, number>,
  approved: 0,
  declined: 0,
  skippedInFlight: 0,
  skippedBusy: 0,
  tolerated: 0,
  deadlineDeclines: 0,
  replaysPastDeadline: 0,
  webhooks: 0
}
const problems: string[] = []
const latencies = new Map<string, Samples>()
const overall = new Samples()
const lag = new Samples()

function count (map: Record<string, number>, key: string, n = 1): void { map[key] = (map[key] ?? 0) + n }
function latency (kind: string): { add: (ms: number) => void } {
  let s = latencies.get(kind)
  if (s === undefined) latencies.set(kind, s = new Samples())
  const counts = kind !== 'setup' && kind !== 'reconcile'
  return { add: (ms) => { s!.add(ms); if (counts) overall.add(ms) } }
}
function problem (message: string): void {
  problems.push(message)
  if (problems.length <= 20) console.error(`\n  ! ${message}`)
}

// ---------------------------------------------------------------------------------------------------------------
// Population

const runId = randomBytes(2).toString('hex')
const random = seededRandom(seed)
const model = new LedgerModel()
const users = Array.from({ length: userCount }, (_, i) => `s${runId}u${i}`)
const cards = Array.from({ length: cardCount }, (_, i) => ({ token: `s${runId}c${i}`, userToken: users[i % userCount] }))
const zipf = new Zipf(cardCount, zipfS)
let seq = 0
const nextToken = (kind: string): string => `s${runId}${kind}${(seq++).toString(36)}`

/** Users with a request in flight: one user's operations are serialized so that the model can predict answers. */
const busy = new Set<string>()
/** Users with a webhook effect that may still be queued: until then their answers are not predicted exactly. */
const asyncUntil = new Map<string, number>()
const ASYNC_GRACE_MS = 15_000
const tainted = (user: string): boolean => (asyncUntil.get(user) ?? 0) > performance.now()
/** Users whose last request never got an answer: their balance is unknown to the model. */
const uncertain = new Set<string>()

const openHolds: string[] = []
const postedHolds: string[] = []
/** Recent JIT requests with their answers, to replay (duplicates must get the same bytes). */
const history: Array<{ body: string, status: number, text: string }> = []
const loadKeys: Array<{ user: string, key: string, body: string, status: number, text: string }> = []

const int = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1))
const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]
/** Purchase amounts: mostly $2-$80, a long tail to $400. */
const purchaseMinor = (): bigint => BigInt(random() < 0.9 ? int(200, 8000) : int(8000, 40000))

function randomCard (): { token: string, userToken: string } | undefined {
  for (let i = 0; i < 8; i++) {
    const card = cards[zipf.sample(random)]
    if (!busy.has(card.userToken)) return card
  }
  for (let i = 0; i < 32; i++) {
    const card = pick(cards)
    if (!busy.has(card.userToken)) return card
  }
  return undefined
}

/** A hold from `list` whose user is free, dropping the ones that are no longer in the wanted state. */
function randomHold (list: string[], state: Hold['state']): Hold | undefined {
  for (let i = 0; i < 12 && list.length > 0; i++) {
    const index = Math.floor(random() * list.length)
    const h = model.holds.get(list[index])!
    if (h.state !== state) {
      list[index] = list[list.length - 1]
      list.pop()
      continue
    }
    if (!busy.has(h.userToken)) return h
  }
  return undefined
}

// ---------------------------------------------------------------------------------------------------------------
// Actions

type Kind = 'authorization' | 'tiny' | 'invalid_amount' | 'incremental' | 'clearing' | 'second_clearing' | 'reversal_partial' |
  'reversal_full' | 'expiry' | 'refund' | 'auth_plus_capture' | 'balance' | 'duplicate' | 'concurrent_duplicate' | 'load' |
  'load_replay' | 'timeout'

const weights: Array<[Kind, number]> = [
  ['authorization', 30], ['tiny', 2], ['invalid_amount', 1], ['incremental', 6], ['clearing', 18], ['second_clearing', 1],
  ['reversal_partial', 4], ['reversal_full', 6], ['expiry', 1.5], ['refund', 4], ['auth_plus_capture', 5], ['balance', 8],
  ['duplicate', 5], ['concurrent_duplicate', 2], ['load', 1.5], ['load_replay', 0.5], ['timeout', 2]
]
let webhooksAvailable = false

function chooseKind (): Kind {
  const usable = weights.filter(([k]) => k !== 'timeout' || webhooksAvailable)
  const total = usable.reduce((a, [, w]) => a + w, 0)
  let u = random() * total
  for (const [k, w] of usable) { if ((u -= w) < 0) return k }
  return 'authorization'
}

/** Picks what to do now and locks its user; undefined when every candidate user is busy. */
function plan (): { kind: Kind, user?: string, run: () => Promise<void> } | undefined {
  let kind = chooseKind()
  const holdKinds: Kind[] = ['incremental', 'clearing', 'reversal_partial', 'reversal_full', 'expiry', 'timeout']
  if (holdKinds.includes(kind)) {
    const h = randomHold(openHolds, 'PENDING')
    if (h !== undefined) return lock(kind, h.userToken, () => holdAction(kind, h))
    kind = 'authorization'
  }
  if (kind === 'second_clearing' || kind === 'refund') {
    const h = randomHold(postedHolds, 'POSTED')
    if (h !== undefined) return lock(kind, h.userToken, () => kind === 'refund' ? refund(h.userToken, h.cardToken, h.postedMinor) : secondClearing(h))
    if (kind === 'second_clearing') kind = 'authorization'
  }
  if (kind === 'duplicate' && history.length > 0) {
    const past = pick(history)
    return { kind, run: () => duplicate(past) }
  }
  if (kind === 'load_replay' && loadKeys.length > 0) {
    const past = pick(loadKeys)
    return { kind, run: () => loadReplay(past) }
  }
  const card = randomCard()
  if (card === undefined) return undefined
  switch (kind) {
    case 'refund': return lock(kind, card.userToken, () => refund(card.userToken, card.token, purchaseMinor()))
    case 'tiny': return lock(kind, card.userToken, () => authorize(kind, card, BigInt(int(1, 9))))
    case 'invalid_amount': return lock(kind, card.userToken, () => authorize(kind, card, undefined))
    case 'auth_plus_capture': return lock(kind, card.userToken, () => authorize(kind, card, purchaseMinor(), 'pgfs.auth_plus_capture'))
    case 'balance': return lock(kind, card.userToken, () => balanceInquiry(card))
    case 'concurrent_duplicate': return lock(kind, card.userToken, () => authorize(kind, card, purchaseMinor(), 'pgfs.authorization', true))
    case 'load': return lock(kind, card.userToken, () => topUp(card.userToken))
    default: return lock('authorization', card.userToken, () => authorize('authorization', card, purchaseMinor()))
  }
}

function lock (kind: Kind, user: string, run: () => Promise<void>): { kind: Kind, user: string, run: () => Promise<void> } {
  busy.add(user)
  return { kind, user, run }
}

function remember (body: string, answer: Answer): void {
  if (history.length < 500) history.push({ body, status: answer.status, text: answer.text })
  else history[Math.floor(random() * history.length)] = { body, status: answer.status, text: answer.text }
}

async function sendJit (kind: Kind, message: JitMessage): Promise<Answer | undefined> {
  const body = JSON.stringify(jitMessage(message))
  const started = performance.now()
  let answer = await callSafely(kind, 'POST', '/marqeta/jit', jitHeaders, body)
  // A retried token answered "past the deadline" is ambiguous: nothing was done, or an earlier attempt was applied and
  // this replay itself ran out of time. Ask again until the service has time to answer from its record.
  while (answer !== undefined && answer.attempts > 1 && pastDeadline(answer) && performance.now() - started < RETRY_FOR_MS) {
    count(stats.errors, `${kind}: retried token answered past the deadline`)
    await sleep(1000)
    answer = await callSafely(kind, 'POST', '/marqeta/jit', jitHeaders, body)
  }
  if (answer === undefined) {
    uncertain.add(message.userToken)
    return undefined
  }
  count(stats.statuses, `jit ${answer.status}`)
  if (answer.status !== 200 && answer.status !== 402) {
    problem(`${kind} ${message.jitToken}: HTTP ${answer.status} ${answer.text.slice(0, 200)}`)
    return undefined
  }
  const jf = answer.json?.jit_funding
  if (jf?.token !== message.jitToken || jf?.method !== message.method || jf?.user_token !== message.userToken) {
    problem(`${kind} ${message.jitToken}: the answer does not echo token/method/user_token: ${answer.text.slice(0, 200)}`)
  }
  remember(body, answer)
  return answer
}

/** Compares a funds-checked answer with the model's prediction; returns the approved amount (0n on decline). */
function judge (kind: Kind, user: string, prediction: Prediction, answer: Answer, partialCapable: boolean): bigint {
  const jf = answer.json.jit_funding
  const approved = answer.status === 200
  if (approved) stats.approved++
  else {
    stats.declined++
    count(stats.declineReasons, String(jf.decline_reason))
  }
  const approvedMinor = approved ? toMinor(jf.amount) : 0n
  if (pastDeadline(answer)) {
    // The contract's answer past JIT_DEADLINE_MS: a decline with a memo and nothing held. Legitimate, but reported.
    stats.deadlineDeclines++
    return 0n
  }
  let ok: boolean
  if (prediction.approve) ok = approved && approvedMinor === prediction.amountMinor
  else if (prediction.reason === 'INSUFFICIENT_FUNDS' && approved) {
    // Partial approval (JIT_PARTIAL_APPROVAL on the server) may approve what is available on a capable terminal.
    ok = partialCapable && approvedMinor === model.balances(user).availableMinor && approvedMinor > 0n
  } else ok = !approved && jf.decline_reason === prediction.reason
  if (!ok) {
    const expected = prediction.approve ? `approval of ${decimalText(prediction.amountMinor)}` : `decline ${prediction.reason}`
    const message = `${kind} ${jf.token} for ${user}: expected ${expected} (available ${decimalText(model.balances(user).availableMinor)}), got ${answer.status} ${answer.text.slice(0, 160)}`
    if (tainted(user)) stats.tolerated++
    else problem(message)
  }
  return approvedMinor
}

async function authorize (kind: Kind, card: { token: string, userToken: string }, amountMinor: bigint | undefined, method = 'pgfs.authorization', concurrentCopy = false): Promise<void> {
  const partialCapable = random() < 0.2
  const message: JitMessage = {
    method,
    jitToken: nextToken('j'),
    transactionToken: nextToken('t'),
    userToken: card.userToken,
    cardToken: card.token,
    amountMinor: amountMinor ?? 0n,
    rawAmount: amountMinor === undefined ? pick(['0.001', 0, '12.345', '-5.00']) : undefined,
    amountAsString: random() < 0.3,
    merchant: pick(merchants),
    partialApprovalCapable: partialCapable
  }
  const prediction = model.predict(card.userToken, amountMinor)
  let answer: Answer | undefined
  if (concurrentCopy) {
    // The same token twice at the same moment: one effect, and both answers byte for byte the same.
    const [a, b] = await Promise.all([sendJit(kind, message), sendJit(kind, message)])
    if (a !== undefined && b !== undefined && (a.status !== b.status || a.text !== b.text)) {
      problem(`concurrent copies of ${message.jitToken} got different answers: ${a.status} ${a.text.slice(0, 120)} / ${b.status} ${b.text.slice(0, 120)}`)
    }
    answer = a ?? b
  } else {
    answer = await sendJit(kind, message)
  }
  if (answer === undefined) return
  const approvedMinor = judge(kind, card.userToken, prediction, answer, partialCapable)
  if (approvedMinor > 0n) {
    if (method === 'pgfs.auth_plus_capture') model.debit(card.userToken, approvedMinor)
    else {
      model.hold(message.jitToken, card.userToken, card.token, approvedMinor)
      openHolds.push(message.jitToken)
    }
  }
}

async function holdAction (kind: Kind, h: Hold): Promise<void> {
  if (kind === 'timeout') return timedOut(h)
  const base = { transactionToken: nextToken('t'), userToken: h.userToken, cardToken: h.cardToken, originalJitToken: h.token, merchant: merchants[0] }
  if (kind === 'incremental') {
    const amountMinor = BigInt(int(100, 3000))
    const message: JitMessage = { ...base, method: 'pgfs.authorization.incremental', jitToken: nextToken('j'), amountMinor }
    const prediction = model.predict(h.userToken, amountMinor)
    const answer = await sendJit(kind, message)
    if (answer === undefined) return
    const approvedMinor = judge(kind, h.userToken, prediction, answer, false)
    if (approvedMinor > 0n) model.increment(h.token, message.jitToken, approvedMinor)
    return
  }
  if (kind === 'clearing') {
    // Equal to the hold most of the time; less (partial shipment, fuel) or more (tips, hotels) otherwise.
    const r = random()
    const held = h.remainingMinor
    const amountMinor = r < 0.6 ? held : r < 0.85 ? max1(held * BigInt(int(70, 99)) / 100n) : held * BigInt(int(105, 120)) / 100n
    const message: JitMessage = { ...base, method: 'pgfs.authorization.capture', jitToken: nextToken('j'), amountMinor, incrementalTokens: h.incrementalTokens }
    if (webhooksAvailable && random() < 0.5) {
      if (await sendWebhook(kind, h.userToken, webhookTransaction({ ...message, type: 'authorization.clearing', state: 'COMPLETION' }))) {
        model.clear(h.token, amountMinor)
        postedHolds.push(h.token)
      }
      return
    }
    if (await sendEffect(kind, message, 'authorization.clearing', 'COMPLETION')) {
      model.clear(h.token, amountMinor)
      postedHolds.push(h.token)
    }
    return
  }
  // Reversals: full (exactly what is left, or more than that: at most what is left is released), partial, expiry.
  const left = h.remainingMinor
  const amountMinor = kind === 'reversal_partial' ? BigInt(int(1, Number(left > 1n ? left - 1n : 1n))) : kind === 'reversal_full' && random() < 0.1 ? left + 500n : left
  const method = kind === 'expiry' ? 'pgfs.authorization.reversal.issuerexpiration' : 'pgfs.authorization.reversal'
  const type = kind === 'expiry' ? 'authorization.reversal.issuerexpiration' : 'authorization.reversal'
  if (await sendEffect(kind, { ...base, method, jitToken: nextToken('j'), amountMinor }, type, 'CLEARED')) model.release(h.token, amountMinor)
}

/** The answer the gateway gives past JIT_DEADLINE_MS: a 402 with a memo, and nothing done. */
function pastDeadline (answer: Answer): boolean {
  return answer.status === 402 && /deadline/i.test(String(answer.json?.jit_funding?.memo ?? ''))
}

/**
 * Sends an informative message (clearing, reversal, refund: never refused) to the gateway. If the gateway answered
 * past its deadline nothing was done, and Marqeta reports the transaction by webhook anyway: the simulator sends it
 * there (same jit_funding token, so the same effect key). Returns whether the effect is (or will be) applied.
 */
async function sendEffect (kind: Kind, message: JitMessage, type: string, state: string): Promise<boolean> {
  const answer = await sendJit(kind, message)
  if (answer === undefined) return false
  if (pastDeadline(answer)) {
    stats.deadlineDeclines++
    if (!webhooksAvailable) return false
    return sendWebhook(`${kind} redelivered`, message.userToken, webhookTransaction({ ...message, type, state }))
  }
  if (answer.status !== 200) {
    problem(`${kind} ${message.jitToken} was refused: ${answer.text.slice(0, 160)}`)
    return false
  }
  return true
}

function max1 (v: bigint): bigint { return v < 1n ? 1n : v }

async function secondClearing (h: Hold): Promise<void> {
  const amountMinor = BigInt(int(100, 2000))
  const applied = await sendEffect('second_clearing', {
    method: 'pgfs.authorization.capture', jitToken: nextToken('j'), transactionToken: nextToken('t'), userToken: h.userToken,
    cardToken: h.cardToken, amountMinor, originalJitToken: h.token, incrementalTokens: h.incrementalTokens
  }, 'authorization.clearing', 'COMPLETION')
  if (applied) model.clear(h.token, amountMinor)
}

async function refund (user: string, cardToken: string, upToMinor: bigint): Promise<void> {
  const amountMinor = max1(upToMinor * BigInt(int(10, 100)) / 100n)
  const message: JitMessage = { method: 'pgfs.refund', jitToken: nextToken('j'), transactionToken: nextToken('t'), userToken: user, cardToken, amountMinor }
  if (await sendEffect('refund', message, 'refund', 'COMPLETION')) model.credit(user, amountMinor)
}

async function balanceInquiry (card: { token: string, userToken: string }): Promise<void> {
  const answer = await sendJit('balance', { method: 'pgfs.balanceinquiry', jitToken: nextToken('j'), transactionToken: nextToken('t'), userToken: card.userToken, cardToken: card.token, amountMinor: 0n })
  if (answer === undefined) return
  if (pastDeadline(answer)) { stats.deadlineDeclines++; return }
  const usd = answer.json?.jit_funding?.balances?.USD
  if (answer.status !== 200 || usd === undefined) {
    problem(`balance inquiry for ${card.userToken}: ${answer.status} ${answer.text.slice(0, 160)}`)
    return
  }
  const want = model.balances(card.userToken)
  const got = { available: toMinor(usd.available_balance), ledger: toMinor(usd.ledger_balance) }
  if (got.available !== want.availableMinor || got.ledger !== want.ledgerMinor) {
    const message = `balance inquiry for ${card.userToken}: available ${decimalText(got.available)} / ledger ${decimalText(got.ledger)}, model ${decimalText(want.availableMinor)} / ${decimalText(want.ledgerMinor)}`
    if (tainted(card.userToken)) stats.tolerated++
    else problem(message)
  }
}

async function duplicate (past: { body: string, status: number, text: string }): Promise<void> {
  const answer = await callSafely('duplicate', 'POST', '/marqeta/jit', jitHeaders, past.body)
  if (answer === undefined) return
  count(stats.statuses, `jit ${answer.status}`)
  if (answer.status !== past.status || answer.text !== past.text) {
    if (pastDeadline(answer)) stats.replaysPastDeadline++
    problem(`replayed token got a different answer${pastDeadline(answer) ? ' (the replay ran past the deadline)' : ''}: first ${past.status} ${past.text.slice(0, 120)}, now ${answer.status} ${answer.text.slice(0, 120)}`)
  }
}

async function topUp (user: string): Promise<void> {
  const key = nextToken('k')
  const amountMinor = BigInt(int(100, 300)) * 100n
  const body = JSON.stringify({ amount: decimalText(amountMinor), currency_code: 'USD' })
  const answer = await callSafely('load', 'POST', `/v1/users/${user}/loads`, { ...adminHeaders, 'idempotency-key': key }, body)
  if (answer === undefined) { uncertain.add(user); return }
  count(stats.statuses, `load ${answer.status}`)
  if (answer.status !== 201) {
    problem(`load for ${user}: ${answer.status} ${answer.text.slice(0, 160)}`)
    return
  }
  model.credit(user, amountMinor)
  loadKeys.push({ user, key, body, status: answer.status, text: answer.text })
}

async function loadReplay (past: { user: string, key: string, body: string, status: number, text: string }): Promise<void> {
  const answer = await callSafely('load_replay', 'POST', `/v1/users/${past.user}/loads`, { ...adminHeaders, 'idempotency-key': past.key }, past.body)
  if (answer === undefined) return
  count(stats.statuses, `load replay ${answer.status}`)
  if (answer.status !== past.status || !sameJson(answer.json, JSON.parse(past.text))) {
    problem(`load replay with Idempotency-Key ${past.key}: first ${past.status} ${past.text.slice(0, 120)}, now ${answer.status} ${answer.text.slice(0, 120)}`)
  }
}

/** Marqeta's report of an authorization whose answer from us arrived too late: it declined, so the hold goes. */
async function timedOut (h: Hold): Promise<void> {
  const item = webhookTransaction({
    method: 'pgfs.authorization', jitToken: h.token, transactionToken: nextToken('t'), userToken: h.userToken, cardToken: h.cardToken,
    amountMinor: h.amountMinor, type: 'authorization', state: 'DECLINED', timedOut: true
  })
  if (await sendWebhook('timeout', h.userToken, item)) model.void(h.token)
}

async function sendWebhook (kind: string, user: string, item: Record<string, unknown>): Promise<boolean> {
  const body = JSON.stringify({ transactions: [item] })
  const answer = await callSafely(`webhook ${kind}`, 'POST', '/marqeta/webhooks', webhookHeaders(body), body)
  if (answer === undefined) { uncertain.add(user); return false }
  count(stats.statuses, `webhook ${answer.status}`)
  if (answer.status !== 200) {
    problem(`webhook ${kind} for ${user}: ${answer.status} ${answer.text.slice(0, 160)}`)
    return false
  }
  stats.webhooks++
  asyncUntil.set(user, performance.now() + ASYNC_GRACE_MS)
  return true
}

function webhookHeaders (body: string): Record<string, string> {
  const headers: Record<string, string> = { 'content-type': 'application/json', authorization: basicAuth(creds.webhookUser, creds.webhookPassword) }
  if (creds.webhookSecret !== undefined) headers['x-marqeta-signature'] = createHmac(creds.webhookAlgorithm, creds.webhookSecret).update(body).digest('hex')
  return headers
}

function sameJson (a: unknown, b: unknown): boolean {
  return JSON.stringify(sortKeys(a)) === JSON.stringify(sortKeys(b))
}
function sortKeys (v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortKeys)
  if (v !== null && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortKeys((v as Record<string, unknown>)[k])]))
  return v
}

// ---------------------------------------------------------------------------------------------------------------
// Phases

async function routeMissing (method: string, path: string, headers: Record<string, string>, body?: string): Promise<boolean> {
  const answer = await call(method, path, headers, body)
  return answer.status === 404 && /Route .* not found/.test(answer.text)
}

async function inBatches<T> (items: T[], width: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) await work(items[next++])
  }))
}

async function setup (): Promise<void> {
  try {
    await call('GET', '/health', {})
  } catch (err) {
    fail(`no service at ${baseUrl.origin}: ${(err as Error).message} (start it with npm start, or pass --url)`)
  }
  if (await routeMissing('GET', `/v1/users/s${runId}probe`, adminHeaders)) fail('the admin API (/v1/users) does not exist on this service yet; the simulator creates its users through it')
  webhooksAvailable = args['no-webhooks'] !== true && !(await routeMissing('POST', '/marqeta/webhooks', webhookHeaders('{"pings":[]}'), '{"pings":[]}'))
  console.log(`simulator run ${runId} (seed ${seed}) against ${baseUrl.origin}: ${userCount} users, ${cardCount} cards (Zipf s=${zipfS}), ${rate} req/s for ${durationS} s` +
    `; webhooks ${webhooksAvailable ? 'used for half the clearings and for timed-out answers' : 'not used (route absent or --no-webhooks)'}`)

  const started = performance.now()
  const expect = (what: string, answer: Answer | undefined, status: number): boolean => {
    if (answer?.status === status) return true
    fail(`${what}: expected ${status}, got ${answer === undefined ? 'no answer' : `${answer.status} ${answer.text.slice(0, 200)}`}`)
  }
  await inBatches(users, 16, async (token) => {
    const answer = await callSafely('setup', 'POST', '/v1/users', adminHeaders, JSON.stringify({ token, first_name: 'Sim', last_name: token, metadata: { simulator: runId } }))
    expect(`POST /v1/users ${token}`, answer, 201)
    model.addUser(token)
  })
  await inBatches(cards, 16, async (card) => {
    const answer = await callSafely('setup', 'POST', '/v1/cards', adminHeaders, JSON.stringify({ token: card.token, user_token: card.userToken }))
    expect(`POST /v1/cards ${card.token}`, answer, 201)
  })
  const loadBody = JSON.stringify({ amount: decimalText(initialLoadMinor), currency_code: 'USD' })
  await inBatches(users, 16, async (user) => {
    const key = `s${runId}-initial-${user}`
    const answer = await callSafely('setup', 'POST', `/v1/users/${user}/loads`, { ...adminHeaders, 'idempotency-key': key }, loadBody)
    expect(`POST /v1/users/${user}/loads`, answer, 201)
    model.credit(user, initialLoadMinor)
    loadKeys.push({ user, key, body: loadBody, status: 201, text: answer!.text })
    const available = answer!.json?.balances?.USD?.available_balance
    if (available !== undefined && toMinor(available) !== initialLoadMinor) problem(`load for ${user}: balances say ${available} available, expected ${decimalText(initialLoadMinor)}`)
  })
  console.log(`created ${userCount} users, ${cardCount} cards and ${userCount} loads of ${decimalText(initialLoadMinor)} through the admin API in ${Math.round(performance.now() - started)} ms`)
}

async function drive (): Promise<number> {
  const total = Math.round(rate * durationS)
  const interval = 1000 / rate
  const inFlight = new Set<Promise<void>>()
  const bar = new cliProgress.SingleBar({
    format: 'simulate [{bar}] {percentage}% | {value}/{total} sent | {rps} req/s | in flight {inflight} | approved {approved} declined {declined} | problems {problems} errors {errors}',
    noTTYOutput: true,
    notTTYSchedule: 5000,
    hideCursor: true
  }, cliProgress.Presets.shades_classic)
  const payload = (): Record<string, unknown> => ({
    rps: Math.round(sent / Math.max(0.001, (performance.now() - t0) / 1000)),
    inflight: inFlight.size,
    approved: stats.approved,
    declined: stats.declined,
    problems: problems.length,
    errors: Object.values(stats.errors).reduce((a, b) => a + b, 0)
  })
  let sent = 0
  const t0 = performance.now()
  bar.start(total, 0, payload())
  let i = 0
  const ticker = setInterval(() => bar.update(i, payload()), 250)
  while (i < total) {
    const now = performance.now()
    while (i < total && t0 + i * interval <= now) {
      const intended = t0 + i * interval
      i++
      if (inFlight.size >= maxInFlight) { stats.skippedInFlight++; continue }
      const planned = plan()
      if (planned === undefined) { stats.skippedBusy++; continue }
      count(stats.actions, planned.kind)
      lag.add(performance.now() - intended)
      sent++
      const work: Promise<void> = planned.run()
        .catch((err: Error) => { problem(`${planned.kind}: ${err.stack ?? err.message}`) })
        .finally(() => {
          if (planned.user !== undefined) busy.delete(planned.user)
          inFlight.delete(work)
        })
      inFlight.add(work)
    }
    await sleep(Math.max(0, t0 + i * interval - performance.now()))
  }
  await Promise.all(inFlight)
  clearInterval(ticker)
  bar.update(total, payload())
  bar.stop()
  return (performance.now() - t0) / 1000
}

interface Difference { user: string, field: string, service: string, model: string, uncertain?: boolean }

async function reconcile (): Promise<{ differences: Difference[], waitedMs: number }> {
  const deadline = performance.now() + (stats.webhooks > 0 ? settleTimeoutS * 1000 : 0)
  const started = performance.now()
  for (;;) {
    const differences: Difference[] = []
    await inBatches(users, 16, async (user) => {
      const answer = await callSafely('reconcile', 'GET', `/v1/users/${user}/balances`, adminHeaders)
      const usd = answer?.json?.USD
      if (answer?.status !== 200 || usd === undefined) {
        differences.push({ user, field: 'balances', service: answer === undefined ? 'no answer' : `${answer.status} ${answer.text.slice(0, 100)}`, model: '' })
        return
      }
      const want = model.balances(user)
      const fields: Array<[string, unknown, bigint]> = [['available_balance', usd.available_balance, want.availableMinor], ['ledger_balance', usd.ledger_balance, want.ledgerMinor]]
      if (usd.pending_holds !== undefined) fields.push(['pending_holds', usd.pending_holds, want.pendingMinor])
      for (const [field, got, expected] of fields) {
        const gotMinor = typeof got === 'string' || typeof got === 'number' ? toMinor(got) : undefined
        if (gotMinor !== expected) differences.push({ user, field, service: String(got), model: decimalText(expected), uncertain: uncertain.has(user) || undefined })
      }
    })
    if (differences.length === 0 || performance.now() > deadline) return { differences, waitedMs: performance.now() - started }
    await sleep(1000)
  }
}

function runAudit (): { ran: boolean, ok: boolean, note: string } {
  const cli = fileURLToPath(new URL('../src/audit-cli.js', import.meta.url))
  if (!existsSync(cli)) return { ran: false, ok: true, note: 'ledger audit skipped: dist/src/audit-cli.js does not exist yet' }
  const databaseUrl = args['database-url'] ?? env.DATABASE_URL
  console.log(`\nledger audit (node dist/src/audit-cli.js) of ${databaseUrl !== undefined ? redactUrl(databaseUrl) : 'the default database (pass --database-url if the service uses another one)'}:`)
  const result = spawnSync(process.execPath, [cli], { stdio: 'inherit', env: databaseUrl !== undefined ? { ...process.env, DATABASE_URL: databaseUrl } : process.env, timeout: 120_000 })
  const ok = result.status === 0
  return { ran: true, ok, note: ok ? 'ledger audit clean' : `ledger audit FAILED (exit ${result.status ?? result.signal})` }
}

function summaryRow (name: string, s: LatencySummary): string[] {
  return [name, s.count.toString(), s.p50.toFixed(2), s.p95.toFixed(2), s.p99.toFixed(2), s.max.toFixed(1)]
}

async function main (): Promise<void> {
  await setup()
  const elapsedS = await drive()
  const { differences, waitedMs } = await reconcile()

  const all = overall.summary()
  const decisions = stats.approved + stats.declined
  console.log(`\nsent ${Object.values(stats.actions).reduce((a, b) => a + b, 0)} operations in ${elapsedS.toFixed(1)} s (target ${rate}/s); ` +
    `skipped ${stats.skippedInFlight} (in-flight cap) + ${stats.skippedBusy} (all candidate users busy); schedule lag p99 ${lag.summary().p99.toFixed(2)} ms`)
  console.log('\n' + textTable(['latency (ms)', 'requests', 'p50', 'p95', 'p99', 'max'], [
    summaryRow('all requests', all),
    ...[...latencies.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([k, s]) => summaryRow(k, s.summary()))
  ]))
  console.log(`\noperations: ${JSON.stringify(stats.actions)}`)
  console.log(`statuses: ${JSON.stringify(stats.statuses)}`)
  console.log(`funds-checked decisions: ${decisions}, approval rate ${decisions > 0 ? (100 * stats.approved / decisions).toFixed(1) : '-'}%; decline reasons: ${JSON.stringify(stats.declineReasons)}`)
  if (Object.keys(stats.errors).length > 0) console.log(`transport errors / 5xx (retried with the same token or key): ${JSON.stringify(stats.errors)}`)
  if (stats.deadlineDeclines > 0) console.log(`${stats.deadlineDeclines} answer(s) past the service's own deadline (JIT_DEADLINE_MS: 402, nothing done; informative messages then redelivered by webhook): the service was overloaded`)
  if (stats.tolerated > 0) console.log(`${stats.tolerated} answer(s) differed from the model while a webhook effect for that user could still be queued (not counted as problems)`)
  if (uncertain.size > 0) problem(`${uncertain.size} users had a request that never got an answer; their balances cannot be predicted`)
  console.log(`webhooks sent: ${stats.webhooks}; reconciliation ${differences.length === 0 ? `matched for all ${userCount} users` : `found ${differences.length} differences`}` +
    (stats.webhooks > 0 ? ` (after ${Math.round(waitedMs)} ms waiting for queued effects)` : ''))
  const unexplained = differences.filter((d) => d.uncertain !== true)
  if (differences.length > unexplained.length) console.log(`  ${differences.length - unexplained.length} of them for users with a request that never got an answer`)
  for (const d of [...unexplained, ...differences.filter((d) => d.uncertain === true)].slice(0, 20)) console.log(`  ${d.user} ${d.field}: service ${d.service}, model ${d.model}${d.uncertain === true ? ' (unanswered request)' : ''}`)
  const audit = runAudit()
  console.log(audit.note)

  const report = {
    run_id: runId,
    seed,
    finished_at: new Date().toISOString(),
    settings: { url: baseUrl.origin, users: userCount, cards: cardCount, rate, duration_s: durationS, zipf: zipfS, initial_load: decimalText(initialLoadMinor), webhooks: webhooksAvailable },
    elapsed_s: round(elapsedS),
    latency_ms: Object.fromEntries([['all', all], ...[...latencies.entries()].map(([k, s]) => [k, s.summary()])].map(([k, s]) => [k, Object.fromEntries(Object.entries(s as LatencySummary).map(([f, v]) => [f, f === 'count' ? v : round(v, 3)]))])),
    schedule_lag_ms: lag.summary(),
    stats,
    approval_rate: decisions > 0 ? round(stats.approved / decisions, 4) : null,
    problems,
    reconciliation: { differences },
    audit
  }
  const dir = fileURLToPath(new URL('../../bench/results/', import.meta.url))
  await mkdir(dir, { recursive: true })
  await writeFile(`${dir}simulate-latest.json`, JSON.stringify(report, (_k, v) => typeof v === 'bigint' ? v.toString() : v, 2) + '\n')

  const failed = problems.length > 0 || differences.length > 0 || !audit.ok
  console.log(`\n${failed ? 'SIMULATION FAILED' : 'simulation passed'}: ${problems.length} problems, ${differences.length} balance differences, ${audit.note}` +
    '\nwritten: bench/results/simulate-latest.json')
  process.exit(failed ? 1 : 0)
}

main().catch((err: Error) => { console.error(`simulate failed: ${err.stack ?? err.message}`); process.exit(1) })
