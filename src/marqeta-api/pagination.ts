import type { Query } from './http.js'

/** One page of a Marqeta list. @see https://www.marqeta.com/docs/core-api/sorting-and-pagination */
export interface Page<T> {
  count: number
  start_index: number
  end_index?: number
  is_more: boolean
  data: T[]
}

export type PageFetcher<T> = (query: Query) => Promise<Page<T>>

/**
 * Every item of a list, page after page (`count`, `start_index`, `is_more`). Sorted by creation time, oldest first,
 * so that records created while we read land after the ones already read instead of shifting them.
 */
export async function * paginate<T> (fetchPage: PageFetcher<T>, query: Query = {}, pageSize = 10): AsyncGenerator<T> {
  let startIndex = 0
  for (;;) {
    const page = await fetchPage({ sort_by: 'createdTime', ...query, count: pageSize, start_index: startIndex })
    const data = page?.data ?? []
    for (const item of data) yield item
    // An empty page that claims more would loop forever: stop.
    if (page?.is_more !== true || data.length === 0) return
    startIndex += data.length
  }
}

/** Collects a whole list (for the small ones: webhooks, controls of one user). */
export async function all<T> (items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = []
  for await (const item of items) out.push(item)
  return out
}
