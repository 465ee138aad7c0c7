import type { TwoLevelCache } from '../cache.js'
import type { CardRow, ContextSource, Controls, UserRow } from './context.js'

export interface ContextTtls { userS: number, cardS: number, controlsS: number }

export const contextKeys = {
  card: (token: string) => `card:${token}`,
  user: (token: string) => `user:${token}`,
  controls: (scope: string) => `controls:${scope}`
}

/** The authorization context through the two cache levels, each part with its own TTL (DESIGN §8). */
export class CachedContextSource implements ContextSource {
  constructor (private readonly cache: TwoLevelCache, private readonly source: ContextSource, private readonly ttls: ContextTtls) {}

  async card (token: string): Promise<CardRow | null> {
    return await this.cache.get(contextKeys.card(token), this.ttls.cardS, () => this.source.card(token))
  }

  async user (token: string): Promise<UserRow | null> {
    return await this.cache.get(contextKeys.user(token), this.ttls.userS, () => this.source.user(token))
  }

  async controls (scope: string): Promise<Controls> {
    return (await this.cache.get(contextKeys.controls(scope), this.ttls.controlsS, () => this.source.controls(scope))) ?? { auth: [], velocity: [] }
  }
}
