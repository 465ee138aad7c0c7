import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import { Type } from '@sinclair/typebox'
import { createCard, getCard, setCardState } from '../../src/admin/cards.js'
import { errors, TimeSchema, TokenParamsSchema, TokenSchema } from './schemas.js'

const CardStateSchema = Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('TERMINATED'), Type.Literal('UNACTIVATED')])

const CardSchema = Type.Object({
  token: Type.String(),
  user_token: Type.String(),
  state: CardStateSchema,
  created_time: TimeSchema,
  last_modified_time: TimeSchema
})

const cards: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/cards', {
    schema: {
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        user_token: Type.String({ minLength: 1 }),
        state: Type.Optional(Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('UNACTIVATED')]))
      }),
      response: { 201: CardSchema, ...errors(400, 401, 404, 409) }
    }
  }, async (request, reply) => {
    const card = await createCard(db, request.body)
    await app.invalidateContext({ cards: [card.token] })
    return reply.code(201).send(card)
  })

  app.get('/cards/:token', {
    schema: { params: TokenParamsSchema, response: { 200: CardSchema, ...errors(400, 401, 404) } }
  }, async (request) => await getCard(db, request.params.token))

  app.patch('/cards/:token', {
    schema: {
      params: TokenParamsSchema,
      body: Type.Object({ state: Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('TERMINATED')]) }),
      response: { 200: CardSchema, ...errors(400, 401, 404, 409) }
    }
  }, async (request) => {
    const { card, changed } = await setCardState(db, request.params.token, request.body.state)
    if (changed) await app.invalidateContext({ cards: [card.token] })
    return card
  })
}

export default cards
