import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from '../digest.js';
import { specDigest, type ProcessSpec } from '../spec.js';
import { resolvedSpecDigest, resolvedSpecJson } from './spec-digest.js';

/** Specs of every shape resolve.ts builds: optional grants absent, keys that look like indexes, odd strings. */
const text = fc.oneof(fc.string(), fc.constantFrom('', '"', '\\', '\u2028', 'é', '${kv:7000}'));
const key = fc.oneof(fc.string(), fc.constantFrom('10', '9', '0', '01', '4294967295', '__proto__', 'LOG', '/etc/a.toml'));
const record = fc.dictionary(key, text, { maxKeys: 4 }).map((r) => Object.fromEntries(Object.entries(r)));
const spec: fc.Arbitrary<ProcessSpec> = fc
  .record({
    name: text,
    binary: text,
    args: fc.array(text, { maxLength: 3 }),
    env: record,
    config: record,
    cpu: fc.option(fc.double({ min: 0.001, max: 64, noNaN: true }), { nil: undefined }),
    memory: fc.option(fc.nat(), { nil: undefined }),
    disk: fc.option(fc.nat(), { nil: undefined }),
    gpu: fc.option(fc.record({ memory: fc.nat(), submitSeconds: fc.option(fc.nat(), { nil: undefined }) }), { nil: undefined }),
    listen: fc.array(fc.integer({ min: 1, max: 65535 }), { maxLength: 3 }),
    connect: fc.array(text, { maxLength: 3 }),
    udp: fc.boolean(),
    restart: fc.constantFrom('always' as const, 'on-failure' as const, 'never' as const),
    shared: fc.boolean(),
    unwalled: fc.boolean(),
  })
  .map((r) => ({
    name: r.name,
    binary: r.binary,
    args: r.args,
    env: r.env,
    config: r.config,
    grants: {
      ...(r.cpu === undefined ? {} : { cpu: r.cpu }),
      ...(r.memory === undefined ? {} : { memory: r.memory }),
      ...(r.disk === undefined ? {} : { disk: r.disk }),
      ...(r.gpu === undefined ? {} : { gpu: { memory: r.gpu.memory, ...(r.gpu.submitSeconds === undefined ? {} : { submitSeconds: r.gpu.submitSeconds }) } }),
      network: { listen: r.listen, connect: r.connect, ...(r.udp ? { udp: true } : {}) },
    },
    restart: r.restart,
    ...(r.shared ? { isolation: 'shared' as const } : {}),
    ...(r.unwalled ? { allowUnwalled: true as const } : {}),
  }));

describe('resolvedSpecDigest', () => {
  it('is specDigest: the same canonical JSON for every spec resolve.ts can build', () => {
    fc.assert(
      fc.property(spec, (s) => {
        expect(resolvedSpecJson(s)).toBe(canonicalJson(s));
        expect(resolvedSpecDigest(s)).toBe(specDigest(s));
      }),
      { numRuns: 1000 },
    );
  });
});
