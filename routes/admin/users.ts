import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createUser, getUser, setUserStatus, userBalances } from '../../src/admin/users.js'
import { BalancesSchema, errors, TimeSchema, TokenParamsSchema, TokenSchema } from './schemas.js'

const UserStatusSchema = Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('CLOSED')])
const MetadataSchema = Type.Record(Type.String(), Type.String())

export const UserSchema = Type.Object({
  token: Type.String(),
  first_name: Type.Optional(Type.String()),
  last_name: Type.Optional(Type.String()),
  metadata: MetadataSchema,
  status: UserStatusSchema,
  created_time: TimeSchema,
  last_modified_time: TimeSchema
})

const NewUserSchema = Type.Object({
  token: Type.Optional(TokenSchema),
  first_name: Type.Optional(Type.String({ maxLength: 255 })),
  last_name: Type.Optional(Type.String({ maxLength: 255 })),
  metadata: Type.Optional(MetadataSchema)
})

const users: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/users', {
    schema: { body: NewUserSchema, response: { 201: UserSchema, ...errors(400, 401, 409) } }
  }, async (request, reply) => {
    const user = await createUser(db, request.body)
    // A token looked up before it existed may be cached as missing.
    await app.invalidateContext({ users: [user.token] })
    return reply.code(201).send(user)
  })

  app.get('/users/:token', {
    schema: { params: TokenParamsSchema, response: { 200: UserSchema, ...errors(400, 401, 404) } }
  }, async (request) => await getUser(db, request.params.token))

  app.patch('/users/:token', {
    schema: {
      params: TokenParamsSchema,
      body: Type.Object({ status: UserStatusSchema }),
      response: { 200: UserSchema, ...errors(400, 401, 404, 409) }
    }
  }, async (request) => {
    const { user, changed } = await setUserStatus(db, request.params.token, request.body.status)
    if (changed) await app.invalidateContext({ users: [user.token] })
    return user
  })

  app.get('/users/:token/balances', {
    schema: {
      params: TokenParamsSchema,
      response: { 200: Type.Record(Type.String({ pattern: '^[A-Z]{3}$' }), BalancesSchema), ...errors(400, 401, 404) }
    }
  }, async (request) => await userBalances(db, request.params.token))
}

export default users
