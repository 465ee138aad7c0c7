import { envSchema } from 'env-schema'
import { Type, type Static } from '@sinclair/typebox'

// Development values, also written in .env.example: they let `npm start` work on a fresh machine.
// With NODE_ENV=production none of them applies and a missing secret stops the boot.
export const developmentSecrets = {
  ADMIN_TOKEN: 'dev-admin-token-change-me',
  JIT_BASIC_AUTH_USER: 'marqeta-jit',
  JIT_BASIC_AUTH_PASSWORD: 'dev-jit-password-change-me',
  WEBHOOK_BASIC_AUTH_USER: 'marqeta-webhook',
  WEBHOOK_BASIC_AUTH_PASSWORD: 'dev-webhook-password-change-me'
} as const

const Bool = Type.Boolean({ default: false })

export const ConfigSchema = Type.Object({
  NODE_ENV: Type.String({ default: 'development' }),
  PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3000 }),
  HOST: Type.String({ default: '0.0.0.0' }),
  DATABASE_URL: Type.String({ pattern: '^postgres(ql)?://', default: 'postgres://postgres@127.0.0.1:5432/postgres' }),
  PG_POOL_MIN: Type.Integer({ minimum: 0, maximum: 200, default: 5 }),
  PG_POOL_MAX: Type.Integer({ minimum: 1, maximum: 200, default: 20 }),
  PG_SLOW_QUERY_MS: Type.Integer({ minimum: 1, default: 100 }),
  PG_BOOT_RETRY_MS: Type.Integer({ minimum: 0, default: 5000 }),
  REDIS_URL: Type.String({ pattern: '^rediss?://', default: 'redis://127.0.0.1:6379' }),
  REDIS_COMMAND_TIMEOUT_MS: Type.Integer({ minimum: 1, default: 200 }),
  RABBITMQ_URL: Type.String({ pattern: '^amqps?://', default: 'amqp://guest:guest@127.0.0.1:5672' }),
  RABBITMQ_PREFETCH: Type.Integer({ minimum: 1, default: 32 }),
  RABBITMQ_RETRY_DELAY_MS: Type.Integer({ minimum: 1, default: 1000 }),
  MONGO_URL: Type.String({ pattern: '^(embedded|mongodb(\\+srv)?://.+)$', default: 'embedded' }),
  MONGO_DB: Type.String({ minLength: 1, default: 'jit_gateway' }),
  // MONGO_URL=embedded only: its snapshot file ('' = memory only) and how often it is written.
  EMBEDDED_MONGO_PATH: Type.String({ default: '.data/embedded-mongo.json' }),
  EMBEDDED_MONGO_PERSIST_MS: Type.Integer({ minimum: 100, default: 5000 }),
  ADMIN_TOKEN: Type.Optional(Type.String({ minLength: 16 })),
  JIT_BASIC_AUTH_USER: Type.Optional(Type.String({ minLength: 1, maxLength: 50 })),
  JIT_BASIC_AUTH_PASSWORD: Type.Optional(Type.String({ minLength: 20, maxLength: 50 })),
  WEBHOOK_BASIC_AUTH_USER: Type.Optional(Type.String({ minLength: 1, maxLength: 50 })),
  WEBHOOK_BASIC_AUTH_PASSWORD: Type.Optional(Type.String({ minLength: 20, maxLength: 50 })),
  WEBHOOK_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  WEBHOOK_SIGNATURE_ALGORITHM: Type.Union([Type.Literal('sha256'), Type.Literal('sha1')], { default: 'sha256' }),
  // An HTTP header name (RFC 9110 token): it is also a redaction path in the logger.
  JIT_CUSTOM_HEADER_NAME: Type.Optional(Type.String({ pattern: "^[!#$%&'*+.^_`|~0-9A-Za-z-]+$" })),
  JIT_CUSTOM_HEADER_VALUE: Type.Optional(Type.String({ minLength: 1 })),
  JIT_DEADLINE_MS: Type.Integer({ minimum: 50, maximum: 2900, default: 1500 }),
  JIT_PARTIAL_APPROVAL: Bool,
  JIT_BATCH_MAX: Type.Integer({ minimum: 1, maximum: 100, default: 10 }),
  JIT_BATCH_CONCURRENCY: Type.Integer({ minimum: 1, maximum: 16, default: 2 }),
  JIT_BATCH_QUEUE_MAX: Type.Integer({ minimum: 1, default: 1000 }),
  JIT_SLOW_WARN_MS: Type.Integer({ minimum: 1, default: 50 }),
  JIT_SLOW_ERROR_MS: Type.Integer({ minimum: 1, default: 100 }),
  HOLD_EXPIRATION_DAYS: Type.Integer({ minimum: 1, maximum: 90, default: 7 }),
  HOLD_EXPIRY_INTERVAL_MS: Type.Integer({ minimum: 1000, default: 60000 }),
  CACHE_ENABLED: Type.Boolean({ default: true }),
  CACHE_LOCAL_TTL_MS: Type.Integer({ minimum: 0, default: 2000 }),
  CACHE_LOCAL_MAX_ENTRIES: Type.Integer({ minimum: 1, default: 50000 }),
  CACHE_USER_TTL_S: Type.Integer({ minimum: 1, default: 3600 }),
  CACHE_CARD_TTL_S: Type.Integer({ minimum: 1, default: 900 }),
  CACHE_CONTROLS_TTL_S: Type.Integer({ minimum: 1, default: 300 }),
  CACHE_NEGATIVE_TTL_S: Type.Integer({ minimum: 1, default: 30 }),
  RELAY_POLL_MS: Type.Integer({ minimum: 10, default: 1000 }),
  // all: HTTP and background work; api: HTTP only; worker: background work, with only probes and metrics on WORKER_PORT.
  ROLE: Type.Union([Type.Literal('all'), Type.Literal('api'), Type.Literal('worker')], { default: 'all' }),
  WORKER_PORT: Type.Integer({ minimum: 0, maximum: 65535, default: 3001 }),
  WORKERS: Type.Integer({ minimum: 1, maximum: 64, default: 1 }),
  LOG_LEVEL: Type.Union(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].map((l) => Type.Literal(l)), { default: 'info' })
})

export type RawConfig = Static<typeof ConfigSchema>
export type Config = RawConfig & typeof developmentSecrets

export class ConfigError extends Error {}

const requiredSecrets = Object.keys(developmentSecrets) as Array<keyof typeof developmentSecrets>

/**
 * Reads and validates the configuration once. `env` defaults to process.env (+ .env); tests pass their own object.
 * Errors name the variable: env-schema's (ajv) messages start with the property path.
 */
export function loadConfig (env?: Record<string, unknown>, warn: (msg: string) => void = console.warn): Config {
  let raw: RawConfig
  try {
    raw = envSchema<RawConfig>({
      schema: ConfigSchema,
      data: env ?? process.env,
      dotenv: env === undefined
    })
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${(err as Error).message}`)
  }
  const missing = requiredSecrets.filter((name) => raw[name] === undefined)
  if (raw.NODE_ENV === 'production') {
    // Production has no development values, and an unsigned webhook endpoint would accept forged ledger movements.
    const unset = raw.WEBHOOK_SECRET === undefined ? [...missing, 'WEBHOOK_SECRET'] : missing
    if (unset.length > 0) throw new ConfigError(`invalid configuration: ${unset.join(', ')} must be set when NODE_ENV=production`)
    // A copied .env.example must not pass for production's own secrets (users are names, not secrets).
    const published = (['ADMIN_TOKEN', 'JIT_BASIC_AUTH_PASSWORD', 'WEBHOOK_BASIC_AUTH_PASSWORD'] as const).filter((name) => raw[name] === developmentSecrets[name])
    if (published.length > 0) {
      throw new ConfigError(`invalid configuration: ${published.join(', ')} must not keep the development value of .env.example when NODE_ENV=production`)
    }
    if (raw.MONGO_URL === 'embedded') {
      throw new ConfigError('invalid configuration: MONGO_URL=embedded is for development only (a killed process may lose its archive); set a mongodb:// URL when NODE_ENV=production')
    }
  } else if (missing.length > 0) {
    warn(`using development values for ${missing.join(', ')} (see .env.example); never do this in production`)
  }
  // Its old `false` now reads as ROLE=all: say so rather than run background work where it was turned off.
  if ((env ?? process.env).RUN_WORKERS !== undefined) warn('RUN_WORKERS is no longer read: set ROLE=api (HTTP only) or ROLE=worker (background work only) instead')
  if (raw.PG_POOL_MIN > raw.PG_POOL_MAX) throw new ConfigError('invalid configuration: PG_POOL_MIN must not exceed PG_POOL_MAX')
  if ((raw.JIT_CUSTOM_HEADER_NAME === undefined) !== (raw.JIT_CUSTOM_HEADER_VALUE === undefined)) {
    throw new ConfigError('invalid configuration: JIT_CUSTOM_HEADER_NAME and JIT_CUSTOM_HEADER_VALUE go together')
  }
  return { ...developmentSecrets, ...stripUndefined(raw) } as Config
}

function stripUndefined<T extends object> (o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>
}

/** The URL with its password replaced, for logs and error messages. */
export function redactUrl (url: string): string {
  try {
    const u = new URL(url)
    if (u.password !== '') u.password = '***'
    return u.toString()
  } catch {
    return '<unparsable url>'
  }
}
