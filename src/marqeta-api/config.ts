import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'

/**
 * The Marqeta Core API client's own settings (the gateway's src/config.ts does not need them): read once per CLI run,
 * validated, and a bad value stops the command with a message that names the variable.
 */
export const MarqetaConfigSchema = Type.Object({
  MARQETA_BASE_URL: Type.String({ pattern: '^https?://', default: 'https://sandbox-api.marqeta.com/v3' }),
  MARQETA_APPLICATION_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  MARQETA_ADMIN_ACCESS_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  MARQETA_TIMEOUT_MS: Type.Integer({ minimum: 1, maximum: 120000, default: 10000 }),
  MARQETA_RETRIES: Type.Integer({ minimum: 0, maximum: 10, default: 4 }),
  MARQETA_RETRY_MIN_MS: Type.Integer({ minimum: 1, default: 250 }),
  MARQETA_RETRY_MAX_MS: Type.Integer({ minimum: 1, default: 10000 }),
  MARQETA_PAGE_SIZE: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  MARQETA_PUBLIC_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  MARQETA_PROGRAM_GATEWAY_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  MARQETA_WEBHOOK_URL: Type.Optional(Type.String({ pattern: '^https?://' })),
  MARQETA_FUNDING_SOURCE_TOKEN: Type.String({ pattern: '^[A-Za-z0-9_-]{1,36}$', default: 'jit-gateway' }),
  MARQETA_FUNDING_SOURCE_NAME: Type.String({ minLength: 1, maxLength: 50, default: 'JIT funding gateway' }),
  MARQETA_WEBHOOK_TOKEN: Type.String({ pattern: '^[A-Za-z0-9_-]{1,36}$', default: 'jit-gateway-webhooks' }),
  MARQETA_WEBHOOK_NAME: Type.String({ minLength: 1, maxLength: 40, default: 'jit-gateway' }),
  MARQETA_WEBHOOK_EVENTS: Type.String({ minLength: 1, default: 'transaction.*,cardtransition.*,usertransition.*' })
})

export type MarqetaConfig = Static<typeof MarqetaConfigSchema>

export class MarqetaConfigError extends Error {}

export function loadMarqetaConfig (env?: Record<string, unknown>): MarqetaConfig {
  try {
    return envSchema<MarqetaConfig>({ schema: MarqetaConfigSchema, data: env ?? process.env, dotenv: env === undefined })
  } catch (err) {
    throw new MarqetaConfigError(`invalid Marqeta configuration: ${(err as Error).message}`)
  }
}

/** The credentials every call needs; asked for only by the commands that call Marqeta. */
export function marqetaCredentials (config: MarqetaConfig): { applicationToken: string, adminAccessToken: string } {
  const missing = (['MARQETA_APPLICATION_TOKEN', 'MARQETA_ADMIN_ACCESS_TOKEN'] as const).filter((name) => config[name] === undefined)
  if (missing.length > 0) throw new MarqetaConfigError(`invalid Marqeta configuration: ${missing.join(' and ')} must be set`)
  return { applicationToken: config.MARQETA_APPLICATION_TOKEN!, adminAccessToken: config.MARQETA_ADMIN_ACCESS_TOKEN! }
}

/** Where Marqeta must call us: explicit URLs, else derived from MARQETA_PUBLIC_URL and our routes (DESIGN §4, §5). */
export function publicEndpoints (config: MarqetaConfig): { jitUrl: string, webhookUrl: string } {
  const base = config.MARQETA_PUBLIC_URL?.replace(/\/+$/, '')
  const jitUrl = config.MARQETA_PROGRAM_GATEWAY_URL ?? (base === undefined ? undefined : `${base}/marqeta/jit`)
  const webhookUrl = config.MARQETA_WEBHOOK_URL ?? (base === undefined ? undefined : `${base}/marqeta/webhooks`)
  if (jitUrl === undefined) throw new MarqetaConfigError('invalid Marqeta configuration: set MARQETA_PUBLIC_URL (or MARQETA_PROGRAM_GATEWAY_URL)')
  if (webhookUrl === undefined) throw new MarqetaConfigError('invalid Marqeta configuration: set MARQETA_PUBLIC_URL (or MARQETA_WEBHOOK_URL)')
  return { jitUrl, webhookUrl }
}
