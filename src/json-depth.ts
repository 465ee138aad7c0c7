/**
 * How deep a request body may nest. Marqeta's messages nest a few levels; MongoDB refuses documents nested more than
 * 100 levels (the archive adds its own), and JSON.stringify and PostgreSQL's jsonb recurse, so a deeper body is
 * refused at the door rather than overflowing a stack later.
 */
export const MAX_JSON_DEPTH = 64

/** True when a parsed JSON value nests objects or arrays deeper than `max`; iterative, so any depth is safe to check. */
export function jsonDeeperThan (value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  const stack: Array<[unknown, number]> = [[value, 0]]
  while (stack.length > 0) {
    const [node, depth] = stack.pop() as [unknown, number]
    if (node === null || typeof node !== 'object') continue
    if (depth + 1 > max) return true
    for (const child of Array.isArray(node) ? node : Object.values(node)) {
      if (child !== null && typeof child === 'object') stack.push([child, depth + 1])
    }
  }
  return false
}

export const tooDeepMessage = `body nests deeper than ${MAX_JSON_DEPTH} levels`
