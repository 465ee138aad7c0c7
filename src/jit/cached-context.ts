import type { TwoLevelCache } from '../cache.js'
import { PROGRAM_SCOPE, type ContextPart, type ContextParts, type ContextSource, type PartVersion } from './context.js'

export interface ContextTtls { userS: number, cardS: number, controlsS: number }

// Each value is cached with its part's version: keys of their own, so that a value cached without one is never read.
export const contextKeys = {
  card: (token: string) => `ctx:card:${token}`,
  user: (token: string) => `ctx:user:${token}`,
  controls: (scope: string) => `ctx:controls:${scope}`
}

/**
 * The authorization context through the two cache levels, each part under its own key and TTL (DESIGN §8). The parts
 * one request lacks are looked up together: one Redis MGET, then one PostgreSQL statement for what Redis lacks.
 */
export class CachedContextSource implements ContextSource {
  constructor (private readonly cache: TwoLevelCache, private readonly source: ContextSource, private readonly ttls: ContextTtls) {}

  async parts (cardToken: string | undefined, userToken: string, wanted: ContextPart[], opts: { fresh?: boolean } = {}): Promise<ContextParts> {
    const keyOf: Record<ContextPart, () => { key: string, ttlS: number }> = {
      card: () => ({ key: contextKeys.card(cardToken ?? ''), ttlS: this.ttls.cardS }),
      user: () => ({ key: contextKeys.user(userToken), ttlS: this.ttls.userS }),
      userControls: () => ({ key: contextKeys.controls(userToken), ttlS: this.ttls.controlsS }),
      programControls: () => ({ key: contextKeys.controls(PROGRAM_SCOPE), ttlS: this.ttls.controlsS })
    }
    const asked = wanted.filter((part) => part !== 'card' || cardToken !== undefined)
    const entries = asked.map((part) => keyOf[part]())
    // A part is cached with its version, as one value.
    const values = await this.cache.getMany(entries, async (keys) => {
      const missing = asked.filter((_part, i) => keys.includes(entries[i].key))
      const loaded = await this.source.parts(cardToken, userToken, missing)
      return new Map(missing.map((part) => [keyOf[part]().key, { value: loaded[part] ?? null, v: loaded.versions?.[part] }]))
    }, opts) as Array<{ value: unknown, v?: PartVersion } | null>
    const parts: ContextParts = { versions: {} }
    asked.forEach((part, i) => {
      const cached = values[i]
      ;(parts as Record<string, unknown>)[part] = cached?.value ?? null
      if (cached?.v !== undefined) parts.versions![part] = cached.v
    })
    return parts
  }
}
