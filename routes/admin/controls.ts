import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import {
  createAuthControl, createVelocityControl, deactivateAuthControl, deactivateVelocityControl,
  listAuthControls, listVelocityControls
} from '../../src/admin/controls.js'
import { AmountSchema, CurrencyCodeSchema, errors, ListOf, TimeSchema, TokenParamsSchema, TokenSchema } from './schemas.js'

const AssociationSchema = Type.Object({
  user_token: Type.Optional(Type.String({ minLength: 1 })),
  card_token: Type.Optional(Type.String({ minLength: 1 }))
})

const MerchantScopeSchema = Type.Object({
  mcc: Type.Optional(Type.String({ pattern: '^[0-9]{4}$' })),
  mid: Type.Optional(Type.String({ minLength: 1, maxLength: 50 }))
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
})

const AuthControlSchema = Type.Object({
  token: Type.String(),
  name: Type.Optional(Type.String()),
  association: AssociationSchema,
  merchant_scope: MerchantScopeSchema,
  active: Type.Boolean(),
  created_time: TimeSchema
})

const ListQuerySchema = Type.Object({
  user_token: Type.Optional(Type.String({ minLength: 1 })),
  card_token: Type.Optional(Type.String({ minLength: 1 }))
})

/** Velocity and auth controls (DESIGN §6); every write invalidates the cached controls of its scope. */
const controls: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/velocitycontrols', {
    schema: {
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        name: Type.Optional(Type.String({ maxLength: 255 })),
        association: AssociationSchema,
        currency_code: CurrencyCodeSchema,
        amount_limit: Type.Optional(AmountSchema),
        usage_limit: Type.Optional(Type.Integer({ minimum: 0, maximum: 2147483647 })),
        velocity_window: VelocityWindowSchema,
        merchant_scope: Type.Optional(MerchantScopeSchema),
        active: Type.Optional(Type.Boolean())
      }),
      response: { 201: VelocityControlSchema, ...errors(400, 401, 404, 409) }
    }
  }, async (request, reply) => {
    const { control, scope } = await createVelocityControl(db, request.body)
    await app.invalidateContext({ controls: [scope] })
    return reply.code(201).send(control)
  })

  app.get('/velocitycontrols', {
    schema: { querystring: ListQuerySchema, response: { 200: ListOf(VelocityControlSchema), ...errors(400, 401) } }
  }, async (request) => ({ data: await listVelocityControls(db, request.query) }))

  app.delete('/velocitycontrols/:token', {
    schema: { params: TokenParamsSchema, response: { 200: VelocityControlSchema, ...errors(400, 401, 404) } }
  }, async (request) => {
    const { control, scope } = await deactivateVelocityControl(db, request.params.token)
    await app.invalidateContext({ controls: [scope] })
    return control
  })

  app.post('/authcontrols', {
    schema: {
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        name: Type.Optional(Type.String({ maxLength: 255 })),
        association: AssociationSchema,
        merchant_scope: Type.Object(MerchantScopeSchema.properties, { minProperties: 1 }),
        active: Type.Optional(Type.Boolean())
      }),
      response: { 201: AuthControlSchema, ...errors(400, 401, 404, 409) }
    }
  }, async (request, reply) => {
    const { control, scope } = await createAuthControl(db, request.body)
    await app.invalidateContext({ controls: [scope] })
    return reply.code(201).send(control)
  })

  app.get('/authcontrols', {
    schema: { querystring: ListQuerySchema, response: { 200: ListOf(AuthControlSchema), ...errors(400, 401) } }
  }, async (request) => ({ data: await listAuthControls(db, request.query) }))

  app.delete('/authcontrols/:token', {
    schema: { params: TokenParamsSchema, response: { 200: AuthControlSchema, ...errors(400, 401, 404) } }
  }, async (request) => {
    const { control, scope } = await deactivateAuthControl(db, request.params.token)
    await app.invalidateContext({ controls: [scope] })
    return control
  })
}

export default controls
