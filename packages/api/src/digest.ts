import { createHash } from 'node:crypto';

/** sha256 of bytes as lowercase hex: the identity of every binary, config file and spec. */
export function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/**
 * JSON with object keys sorted at every level, so equal values always serialize (and hash) the
 * same way regardless of key order in the source file. Objects are rebuilt without a prototype,
 * so every own key, `__proto__` included, is in the output: a digest covers all that was parsed.
 */
export function canonicalJson(value: unknown): string {
  return write(value) ?? 'null';
}

/**
 * What `JSON.stringify` gives for the value with its keys sorted, written in one pass (a sorted copy
 * of every spec first cost more than hashing 100,000 of them). `undefined` where JSON.stringify
 * leaves a value out.
 */
function write(value: unknown): string | undefined {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) as string | undefined;
  if (typeof (value as { toJSON?: unknown }).toJSON === 'function') return JSON.stringify(sortKeys(value));
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += `${i === 0 ? '' : ','}${write(value[i]) ?? 'null'}`;
    return `${out}]`;
  }
  let out = '{';
  let first = true;
  for (const k of sortedKeys(value)) {
    const v = write((value as Record<string, unknown>)[k]);
    if (v === undefined) continue;
    out += `${first ? '' : ','}${JSON.stringify(k)}:${v}`;
    first = false;
  }
  return `${out}}`;
}

const INDEX = /^(?:0|[1-9][0-9]*)$/;

/**
 * The keys in the order JSON.stringify lists them for an object built by inserting them sorted:
 * array-index keys ("2", "10") first in numeric order (JavaScript enumerates those first), then
 * the others sorted. Digests made before this writer existed depend on exactly that order.
 */
function sortedKeys(value: object): string[] {
  const keys = Object.keys(value).sort();
  // An index key starts with a digit: only those meet the pattern (in a cold process, as the
  // command's 1,000 call digests run, the pattern on every key was half of this function's time).
  let indexed = false;
  for (const k of keys) {
    const c = k.charCodeAt(0);
    if (c >= 48 && c <= 57 && INDEX.test(k)) {
      indexed = true;
      break;
    }
  }
  if (!indexed) return keys;
  const isIndex = (k: string) => INDEX.test(k) && Number(k) < 4294967295;
  return [...keys.filter(isIndex).sort((a, b) => Number(a) - Number(b)), ...keys.filter((k) => !isIndex(k))];
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value !== null && typeof value === 'object') {
    const out = Object.create(null) as Record<string, unknown>;
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}
