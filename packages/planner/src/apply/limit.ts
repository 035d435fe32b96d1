/**
 * Open connections at most, by default, for the commands that reach every machine (`status`,
 * `plan --live`, `up`, `down`, `apply`): a fleet of this size is asked at once, in a few round
 * trips; a larger one in turns. A connection costs the client a socket and little else.
 */
export const DEFAULT_CONNECTIONS = 256;

/**
 * Run `task` for every item with at most `limit` running at once; results in input order. A failed
 * task does not stop the others (machines are independent): each result says how it ended.
 */
export async function mapLimited<T, R>(
  items: readonly T[],
  limit: number,
  task: (item: T, index: number) => Promise<R>,
): Promise<PromiseSettledResult<R>[]> {
  // Programmer error: --parallelism is checked where it is read (FlagError); this guards other callers.
  if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`parallelism must be a positive integer, got ${limit}`);
  const results: PromiseSettledResult<R>[] = new Array(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      try {
        results[i] = { status: 'fulfilled', value: await task(items[i] as T, i) };
      } catch (reason) {
        results[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
