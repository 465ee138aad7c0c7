import { randomUUID } from 'node:crypto'

/** Marqeta tokens: client-supplied (1–36 of [A-Za-z0-9_-]) or generated; a UUID is exactly 36 characters. */
export const TOKEN_PATTERN = '^[A-Za-z0-9_-]{1,36}$'

export const tokenOrNew = (token: string | undefined): string => token ?? randomUUID()

export const iso = (value: Date | string): string => (value instanceof Date ? value : new Date(value)).toISOString()
