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
}, { description: 'A card of a cardholder', examples: [{ token: 'card-alice-1', user_token: 'alice', state: 'ACTIVE', created_time: '2026-01-15T10:00:00.000Z', last_modified_time: '2026-01-15T10:00:00.000Z' }] })

const cards: FastifyPluginAsync = async (fastify) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>()
  const { db } = app

  app.post('/cards', {
    schema: {
      tags: ['cards'],
      summary: 'Create a card for a cardholder',
      description: 'The token is yours (1-36 of [A-Za-z0-9_-]) or generated; state defaults to ACTIVE.',
      body: Type.Object({
        token: Type.Optional(TokenSchema),
        user_token: TokenSchema,
        state: Type.Optional(Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('UNACTIVATED')]))
      }, { examples: [{ token: 'card-alice-1', user_token: 'alice', state: 'ACTIVE' }] }),
      response: {
        201: CardSchema,
        ...errors(400, 401, [404, 'No user has this token', 'user alice not found', 'NOT_FOUND'],
          [409, 'A card already has this token, or the user is CLOSED', 'a card with token card-alice-1 already exists', 'DUPLICATE_TOKEN'])
      }
    }
  }, async (request, reply) => {
    const card = await createCard(db, request.body)
    await app.invalidateContext({ cards: [card.token] })
    return reply.code(201).send(card)
  })

  app.get('/cards/:token', {
    schema: {
      tags: ['cards'],
      summary: 'Get a card',
      params: TokenParamsSchema,
      response: { 200: CardSchema, ...errors(400, 401, [404, 'No card has this token', 'card card-alice-1 not found', 'NOT_FOUND']) }
    }
  }, async (request) => await getCard(db, request.params.token))

  app.patch('/cards/:token', {
    schema: {
      tags: ['cards'],
      summary: 'Change a card\'s state',
      description: 'A card that is not ACTIVE is declined CARD_NOT_ACTIVE. TERMINATED is final.',
      params: TokenParamsSchema,
      body: Type.Object({ state: Type.Union([Type.Literal('ACTIVE'), Type.Literal('SUSPENDED'), Type.Literal('TERMINATED')]) }, { examples: [{ state: 'SUSPENDED' }] }),
      response: {
        200: CardSchema,
        ...errors(400, 401, [404, 'No card has this token', 'card card-alice-1 not found', 'NOT_FOUND'],
          [409, 'The card is TERMINATED, which is final', 'card card-alice-1 is TERMINATED, which is final', 'INVALID_TRANSITION'])
      }
    }
  }, async (request) => {
    const { card, changed } = await setCardState(db, request.params.token, request.body.state)
    if (changed) await app.invalidateContext({ cards: [card.token] })
    return card
  })
}

export default cards
