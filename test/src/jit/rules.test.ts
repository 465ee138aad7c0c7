import t from 'tap'
import { checkCardAndHolder, checkSpendingControls, type Purchase } from '../../../src/jit/rules.js'
import { windowStart } from '../../../src/jit/velocity.js'
import type { AuthContext, AuthControlRow, VelocityControlRow } from '../../../src/jit/context.js'

// A fixed clock: Saturday 2026-11-21 23:59:59 UTC; one second later it is Sunday 2026-11-22 00:00 UTC.
const saturdayNight = new Date('2026-11-21T23:59:59.000Z')
const sundayMidnight = new Date('2026-11-22T00:00:00.000Z')

const purchase = (o: Partial<Purchase> = {}): Purchase => ({
  cardToken: 'card-1', userToken: 'user-1', actingUserToken: undefined, currencyCode: 'USD', amountMinor: 1000n,
  mcc: '5411', mid: 'MID-1', incremental: false, ...o
})
const vc = (o: Partial<VelocityControlRow>): VelocityControlRow => ({
  token: 'vc-1', user_token: 'user-1', card_token: null, currency_code: 'USD', amount_limit: null, usage_limit: null,
  velocity_window: 'DAY', mcc: null, mid: null, created_time: '2026-01-15T10:00:00.123456+00:00', ...o
})
const ac = (o: Partial<AuthControlRow>): AuthControlRow => ({ token: 'ac-1', user_token: 'user-1', card_token: null, mcc: null, mid: null, ...o })
const ctx = (o: { auth?: AuthControlRow[], velocity?: VelocityControlRow[], card?: AuthContext['card'], user?: AuthContext['user'] } = {}): AuthContext => ({
  card: o.card === undefined ? { token: 'card-1', user_token: 'user-1', state: 'ACTIVE' } : o.card,
  user: o.user === undefined ? { token: 'user-1', status: 'ACTIVE' } : o.user,
  controls: { auth: o.auth ?? [], velocity: o.velocity ?? [] }
})

t.test('windows start in UTC: DAY at 00:00, WEEK on Sunday, MONTH on the 1st, LIFETIME at creation', async (t) => {
  const start = (w: VelocityControlRow['velocity_window'], now: Date) => windowStart(vc({ velocity_window: w }), now)?.toISOString()
  t.equal(saturdayNight.getUTCDay(), 6)
  t.equal(start('WEEK', saturdayNight), '2026-11-15T00:00:00.000Z', 'Saturday 23:59:59 is still in the week that began last Sunday')
  t.equal(start('WEEK', sundayMidnight), '2026-11-22T00:00:00.000Z', 'Sunday 00:00 begins a new week')
  t.equal(start('WEEK', new Date('2026-11-22T00:00:00.001Z')), '2026-11-22T00:00:00.000Z')
  t.equal(start('DAY', saturdayNight), '2026-11-21T00:00:00.000Z')
  t.equal(start('DAY', sundayMidnight), '2026-11-22T00:00:00.000Z')
  t.equal(start('MONTH', new Date('2026-11-30T23:59:59.999Z')), '2026-11-01T00:00:00.000Z', 'month end')
  t.equal(start('MONTH', new Date('2026-12-01T00:00:00.000Z')), '2026-12-01T00:00:00.000Z', 'a new month')
  t.equal(start('MONTH', new Date('2028-02-29T12:00:00Z')), '2028-02-01T00:00:00.000Z', 'leap February')
  t.equal(start('WEEK', new Date('2027-01-01T10:00:00Z')), '2026-12-27T00:00:00.000Z', 'a week across the new year')
  // Windows are UTC, whatever offset a timestamp was written with.
  t.equal(start('DAY', new Date('2026-11-22T01:30:00+02:00')), '2026-11-21T00:00:00.000Z')
  t.equal(start('LIFETIME', saturdayNight), '2026-01-15T10:00:00.123Z')
  t.equal(start('TRANSACTION', saturdayNight), undefined)
})

t.test('card and cardholder come first, in the order of DESIGN §4', async (t) => {
  t.match(checkCardAndHolder(ctx({ card: null }), purchase()), { decline: 'INVALID_CARD' })
  t.match(checkCardAndHolder(ctx({ card: { token: 'card-1', user_token: 'user-2', state: 'ACTIVE' } }), purchase()), { decline: 'INVALID_CARD' })
  t.equal(checkCardAndHolder(ctx({ card: { token: 'card-1', user_token: 'user-2', state: 'ACTIVE' } }), purchase({ actingUserToken: 'user-2' })), undefined)
  t.match(checkCardAndHolder(ctx({ card: { token: 'card-1', user_token: 'user-1', state: 'SUSPENDED' }, user: { token: 'user-1', status: 'CLOSED' } }), purchase()), { decline: 'CARD_NOT_ACTIVE' })
  t.match(checkCardAndHolder(ctx({ user: { token: 'user-1', status: 'SUSPENDED' } }), purchase()), { decline: 'CARDHOLDER_NOT_ACTIVE' })
  t.match(checkCardAndHolder(ctx({ user: { token: 'user-1', status: 'CLOSED' } }), purchase()), { decline: 'CLOSED_ACCOUNT' })
  t.equal(checkCardAndHolder(ctx(), purchase()), undefined)
})

t.test('auth controls block the merchants they scope', async (t) => {
  t.match(checkSpendingControls(ctx({ auth: [ac({ mcc: '5411' })] }), purchase(), saturdayNight), { decline: 'TRANSACTION_NOT_PERMITTED' })
  t.match(checkSpendingControls(ctx({ auth: [ac({ mid: 'MID-1' })] }), purchase(), saturdayNight), { decline: 'TRANSACTION_NOT_PERMITTED' })
  t.match(checkSpendingControls(ctx({ auth: [ac({ mcc: '5411', mid: 'MID-2' })] }), purchase(), saturdayNight), { velocity: [] }, 'both must match')
  t.match(checkSpendingControls(ctx({ auth: [ac({ user_token: null, mcc: '5411' })] }), purchase(), saturdayNight), { decline: 'TRANSACTION_NOT_PERMITTED' }, 'program-wide')
  t.match(checkSpendingControls(ctx({ auth: [ac({ user_token: null, card_token: 'card-9', mcc: '5411' })] }), purchase(), saturdayNight), { velocity: [] }, 'another card')
  t.match(checkSpendingControls(ctx({ auth: [ac({ user_token: 'user-2', mcc: '5411' })] }), purchase(), saturdayNight), { velocity: [] }, 'another user')
})

t.test('a per-transaction cap declines before any window, and windows go to the ledger with their start', async (t) => {
  const velocity = [vc({ token: 'cap', velocity_window: 'TRANSACTION', amount_limit: '999' }), vc({ token: 'week', velocity_window: 'WEEK', usage_limit: 3 })]
  t.match(checkSpendingControls(ctx({ velocity }), purchase(), saturdayNight), { decline: 'AMOUNT_LIMIT_EXCEEDED' })
  const passed = checkSpendingControls(ctx({ velocity }), purchase({ amountMinor: 999n }), sundayMidnight)
  t.same(passed, { velocity: [{ token: 'week', amount_limit: null, usage_limit: 3, since: '2026-11-22T00:00:00.000Z', user_token: 'user-1', card_token: null, mcc: null, mid: null }] })
  const before = checkSpendingControls(ctx({ velocity }), purchase({ amountMinor: 999n }), saturdayNight)
  t.match(before, { velocity: [{ token: 'week', since: '2026-11-15T00:00:00.000Z' }] })
})

t.test('which controls count: currency, merchant scope, card, incrementals and program-wide ones', async (t) => {
  const velocity = [
    vc({ token: 'eur', currency_code: 'EUR', amount_limit: '1' }),
    vc({ token: 'mcc', mcc: '5812', amount_limit: '1' }),
    vc({ token: 'card', user_token: null, card_token: 'card-1', amount_limit: '5000' }),
    vc({ token: 'other-card', user_token: null, card_token: 'card-2', amount_limit: '1' }),
    vc({ token: 'program', user_token: null, usage_limit: 10 })
  ]
  const out = checkSpendingControls(ctx({ velocity }), purchase(), saturdayNight)
  if (out.decline !== undefined) throw new Error(out.memo)
  t.same(out.velocity.map((v) => v.token).sort(), ['card', 'program'])
  t.match(out.velocity.find((v) => v.token === 'card'), { card_token: 'card-1', user_token: null }, 'a card control counts the card')
  t.match(out.velocity.find((v) => v.token === 'program'), { user_token: 'user-1', card_token: null }, 'a program-wide control counts each user on their own')
  const incremental = checkSpendingControls(ctx({ velocity }), purchase({ incremental: true }), saturdayNight)
  t.match(incremental, { velocity: [{ usage_limit: null }, { usage_limit: null }] }, 'an incremental is not a new use')
})
