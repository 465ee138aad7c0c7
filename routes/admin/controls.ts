import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import {
  createAuthControl, createVelocityControl, deactivateAuthControl, deactivateVelocityControl,
  listAuthControls, listVelocityControls
} from '../../src/admin/controls.js'
import { AmountSchema, CurrencyCodeSchema, errors, finiteIntegers, ListOf, TextSchema, TimeSchema, TokenParamsSchema, TokenSchema } from './schemas.js'

const AssociationSchema = Type.Object({
  user_token: Type.Optional(TokenSchema),
  card_token: Type.Optional(TokenSchema)
})

const MerchantScopeSchema = Type.Object({
  mcc: Type.Optional(Type.String({ pattern: '^[0-9]{4}$' })),
  mid: Type.Optional(TextSchema({ minLength: 1, maxLength: 50 }))
})

const VelocityWindowSchema = Type.Union(['DAY', 'WEEK', 'MONTH', 'LIFETIME', 'TRANSACTION'].map((w) => Type.Literal(w as 'DAY')))

const VelocityControlSchema = Type.Object({
  token: Type.String(),
  name: Type.Optional(Type.String()),
  association: AssociationSchema,
  currency_code: Type.String(),
  amount_limit: Type.Optional(Type.String()),
  usage_limit: Type.Optional(Type.Integer()),
  velocity_window: Type.String(),
  merchant_scope: MerchantScopeSchema,
  active: Type.Boolean(),
  created_time: TimeSchema
}, { description: 'A velocity control', examples: [{ token: 'vc-alice-daily', name: 'daily cap', association: { user_token: 'alice' }, currency_code: 'USD', amount_limit: '500.00', velocity_window: 'DAY', merchant_scope: {}, active: true, created_time: '2026-01-15T10:00:00.000Z' }] })

const AuthControlSchema = Type.Object({
  token: Type.String(),
  name: Type.Optional(Type.String()),
  association: AssociationSchema,
  merchant_scope: MerchantScopeSchema,
  active: Type.Boolean(),
  created_time: TimeSchema
}, { description: 'An auth control: blocks the merchants it scopes', examples: [{ token: 'ac-no-gambling', name: 'no gambling', association: {}, merchant_scope: { mcc: '7995' }, active: true, created_time: '2026-01-15T10:00:00.000Z' }] })

const ListQuerySchema = Type.Object({
  user_token: Type.Optional(TokenSchema),
  card_token: Type.Optional(TokenSchema)
})

/** Velocity and auth controls (DESIGN §6); every write invalidates the cached controls of its scope. */
const controls: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/velocitycontrols', {
    preValidation: finiteIntegers('body', 'usage_limit'),
    schema: {
      tags: ['controls'],
      summary: 'Create a velocity control',
      description: 'Limits spend (amount_limit) and/or uses (usage_limit) per window (DAY from 00:00 UTC, WEEK from Sunday, MONTH from the 1st, LIFETIME, TRANSACTION = per-transaction cap). An association with neither token applies to the whole program.',
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        name: Type.Optional(TextSchema({ maxLength: 255 })),
        association: AssociationSchema,
        currency_code: CurrencyCodeSchema,
        amount_limit: Type.Optional(AmountSchema),
        usage_limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 2147483647 })),
        velocity_window: VelocityWindowSchema,
        merchant_scope: Type.Optional(MerchantScopeSchema),
        active: Type.Optional(Type.Boolean())
      }, { examples: [{ token: 'vc-alice-daily', name: 'daily cap', association: { user_token: 'alice' }, currency_code: 'USD', amount_limit: '500.00', velocity_window: 'DAY' }] }),
      response: {
        201: VelocityControlSchema,
        ...errors([400, 'Invalid value, or neither amount_limit nor usage_limit', 'body must have amount_limit or usage_limit'], 401,
          [404, 'The associated user or card does not exist', 'user alice not found', 'NOT_FOUND'],
          [409, 'A velocity control already has this token', 'a velocity control with token vc-alice-daily already exists', 'DUPLICATE_TOKEN'])
      }
    }
  }, async (request, reply) => {
    const { control, scope } = await createVelocityControl(db, request.body)
    await app.invalidateContext({ controls: [scope] })
    return reply.code(201).send(control)
  })

  app.get('/velocitycontrols', {
    schema: {
      tags: ['controls'],
      summary: 'List velocity controls',
      querystring: ListQuerySchema,
      response: { 200: ListOf(VelocityControlSchema, { examples: [{ data: [{ token: 'vc-alice-daily', name: 'daily cap', association: { user_token: 'alice' }, currency_code: 'USD', amount_limit: '500.00', velocity_window: 'DAY', merchant_scope: {}, active: true, created_time: '2026-01-15T10:00:00.000Z' }] }] }), ...errors(400, 401) }
    }
  }, async (request) => ({ data: await listVelocityControls(db, request.query) }))

  app.delete('/velocitycontrols/:token', {
    schema: {
      tags: ['controls'],
      summary: 'Deactivate a velocity control',
      description: 'Answers the deactivated control (active: false).',
      params: TokenParamsSchema,
      response: { 200: VelocityControlSchema, ...errors(400, 401, [404, 'No velocity control has this token', 'velocity control vc-alice-daily not found', 'NOT_FOUND']) }
    }
  }, async (request) => {
    const { control, scope } = await deactivateVelocityControl(db, request.params.token)
    await app.invalidateContext({ controls: [scope] })
    return control
  })

  app.post('/authcontrols', {
    schema: {
      tags: ['controls'],
      summary: 'Create an auth control',
      description: 'Blocks the merchants it scopes (MCC and/or MID; with both, both must match): such authorizations are declined TRANSACTION_NOT_PERMITTED. An empty merchant_scope is a 400.',
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        name: Type.Optional(TextSchema({ maxLength: 255 })),
        association: AssociationSchema,
        merchant_scope: Type.Object(MerchantScopeSchema.properties, { minProperties: 1 }),
        active: Type.Optional(Type.Boolean())
      }, { examples: [{ token: 'ac-no-gambling', name: 'no gambling', association: {}, merchant_scope: { mcc: '7995' } }] }),
      response: {
        201: AuthControlSchema,
        ...errors([400, 'Invalid value or an empty merchant_scope', 'body/merchant_scope must NOT have fewer than 1 properties', 'FST_ERR_VALIDATION'], 401,
          [404, 'The associated user or card does not exist', 'card card-alice-1 not found', 'NOT_FOUND'],
          [409, 'An auth control already has this token', 'an auth control with token ac-no-gambling already exists', 'DUPLICATE_TOKEN'])
      }
    }
  }, async (request, reply) => {
    const { control, scope } = await createAuthControl(db, request.body)
    await app.invalidateContext({ controls: [scope] })
    return reply.code(201).send(control)
  })

  app.get('/authcontrols', {
    schema: {
      tags: ['controls'],
      summary: 'List auth controls',
      querystring: ListQuerySchema,
      response: { 200: ListOf(AuthControlSchema, { examples: [{ data: [{ token: 'ac-no-gambling', name: 'no gambling', association: {}, merchant_scope: { mcc: '7995' }, active: true, created_time: '2026-01-15T10:00:00.000Z' }] }] }), ...errors(400, 401) }
    }
  }, async (request) => ({ data: await listAuthControls(db, request.query) }))

  app.delete('/authcontrols/:token', {
    schema: {
      tags: ['controls'],
      summary: 'Deactivate an auth control',
      description: 'Answers the deactivated control (active: false).',
      params: TokenParamsSchema,
      response: { 200: AuthControlSchema, ...errors(400, 401, [404, 'No auth control has this token', 'auth control ac-no-gambling not found', 'NOT_FOUND']) }
    }
  }, async (request) => {
    const { control, scope } = await deactivateAuthControl(db, request.params.token)
    await app.invalidateContext({ controls: [scope] })
    return control
  })
}

export default controls
