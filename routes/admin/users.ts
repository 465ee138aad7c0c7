import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createUser, getUser, setUserStatus, userBalances } from '../../src/admin/users.js'
import { BalancesByCurrencySchema, errors, TEXT_PATTERN, TextSchema, TimeSchema, TokenParamsSchema, TokenSchema } from './schemas.js'

const UserStatusSchema = Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('CLOSED')])
const MetadataSchema = Type.Record(Type.String(), TextSchema(), { propertyNames: { pattern: TEXT_PATTERN } })

export const UserSchema = Type.Object({
  token: Type.String(),
  first_name: Type.Optional(Type.String()),
  last_name: Type.Optional(Type.String()),
  metadata: MetadataSchema,
  status: UserStatusSchema,
  created_time: TimeSchema,
  last_modified_time: TimeSchema
}, {
  description: 'A cardholder',
  examples: [{ token: 'alice', first_name: 'Alice', last_name: 'Martin', metadata: {}, status: 'ACTIVE', created_time: '2026-01-15T10:00:00.000Z', last_modified_time: '2026-01-15T10:00:00.000Z' }]
})

const NewUserSchema = Type.Object({
  token: Type.Optional(TokenSchema),
  first_name: Type.Optional(TextSchema({ maxLength: 255 })),
  last_name: Type.Optional(TextSchema({ maxLength: 255 })),
  metadata: Type.Optional(MetadataSchema)
}, { examples: [{ token: 'alice', first_name: 'Alice', last_name: 'Martin', metadata: { employee_id: 'E-1024' } }] })

const users: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/users', {
    schema: {
      tags: ['users'],
      summary: 'Create a cardholder',
      description: 'The token is yours (1-36 of [A-Za-z0-9_-]) or generated. The user starts ACTIVE.',
      body: NewUserSchema,
      response: { 201: UserSchema, ...errors(400, 401, [409, 'A user already has this token']) }
    }
  }, async (request, reply) => {
    const user = await createUser(db, request.body)
    // A token looked up before it existed may be cached as missing.
    await app.invalidateContext({ users: [user.token] })
    return reply.code(201).send(user)
  })

  app.get('/users/:token', {
    schema: {
      tags: ['users'],
      summary: 'Get a cardholder',
      params: TokenParamsSchema,
      response: { 200: UserSchema, ...errors([400, 'The token does not have the token form', 'params/token must match pattern "^[A-Za-z0-9_-]{1,36}$"', 'FST_ERR_VALIDATION'], 401, [404, 'No user has this token']) }
    }
  }, async (request) => await getUser(db, request.params.token))

  app.patch('/users/:token', {
    schema: {
      tags: ['users'],
      summary: 'Change a cardholder\'s status',
      description: 'SUSPENDED cardholders are declined CARDHOLDER_NOT_ACTIVE, CLOSED ones CLOSED_ACCOUNT. CLOSED is final.',
      params: TokenParamsSchema,
      body: Type.Object({ status: UserStatusSchema }, { examples: [{ status: 'SUSPENDED' }] }),
      response: { 200: UserSchema, ...errors(400, 401, [404, 'No user has this token'], [409, 'The user is CLOSED, which is final', 'user alice is CLOSED, which is final', 'INVALID_TRANSITION']) }
    }
  }, async (request) => {
    const { user, changed } = await setUserStatus(db, request.params.token, request.body.status)
    if (changed) await app.invalidateContext({ users: [user.token] })
    return user
  })

  app.get('/users/:token/balances', {
    schema: {
      tags: ['users'],
      summary: 'A cardholder\'s balances by currency',
      params: TokenParamsSchema,
      response: { 200: BalancesByCurrencySchema, ...errors(400, 401, [404, 'No user has this token']) }
    }
  }, async (request) => await userBalances(db, request.params.token))
}

export default users
