/**
 * `rec[key]` where `rec` has `key` as its own property, else undefined. The records here are plain
 * objects keyed by names from an infra file or an agent, and `constructor` is a valid name: indexed
 * directly it is Object.prototype's, not an absent process.
 */
export function own<T>(rec: Readonly<Record<string, T>>, key: string): T | undefined {
  return Object.hasOwn(rec, key) ? rec[key] : undefined;
}
