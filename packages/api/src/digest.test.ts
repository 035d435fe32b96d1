import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './digest.js';

/** The definition: JSON.stringify of a copy with every object's keys sorted. */
function reference(value: unknown): string {
  const sortKeys = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === 'object') {
      const out = Object.create(null) as Record<string, unknown>;
      for (const k of Object.keys(v).sort()) {
        const x = (v as Record<string, unknown>)[k];
        if (x !== undefined) out[k] = sortKeys(x);
      }
      return out;
    }
    return v;
  };
  return JSON.stringify(sortKeys(value)) ?? 'null';
}

describe('canonicalJson', () => {
  it('is JSON.stringify of the value with sorted keys, for any JSON-like value (undefined, -0, __proto__ included)', () => {
    const key = fc.oneof(fc.string(), fc.constantFrom('__proto__', 'toString', 'a', 'b', '10', '9', '01', '4294967295', '4294967294', '-1', '1.5'));
    const leaf = fc.oneof(fc.string(), fc.double(), fc.integer(), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.constant(-0));
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('value')), fc.dictionary(key, tie('value'))),
    }));
    fc.assert(fc.property(value, (v) => {
        expect(canonicalJson(v)).toBe(reference(v));
      }), { numRuns: 500 });
  });

  it('writes dates and buffers as the sorted copy did', () => {
    const v = { b: new Date(0), a: Buffer.from('hi'), c: [undefined, () => 1] };
    expect(canonicalJson(v)).toBe(reference(v));
  });
});
