import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, ErrorCode, sha256Hex } from '@lowcloud/api';
import { PlanFormatError } from '../errors.js';
import { parsePlanDocument, PLAN_FORMAT_VERSION, stateDigest } from './document.js';
import type { PlanState } from './types.js';

const spec = { name: 'kv', binary: 'a'.repeat(64), args: [], env: {}, config: { '/etc/kv.toml': 'b'.repeat(64) }, grants: { network: { listen: [], connect: [] } }, restart: 'always' };
const doc = (calls: unknown[]) => ({ format_version: PLAN_FORMAT_VERSION, planner: 'minimal', machines: {}, calls, changes: [], files: {} });

const refusal = (value: unknown): PlanFormatError => {
  try {
    parsePlanDocument(value, 'plan.json');
  } catch (err) {
    if (err instanceof PlanFormatError) return err;
    throw err;
  }
  throw new Error('accepted');
};

describe('parsePlanDocument: each call carries what its type needs', () => {
  it('accepts start, stop and replace-config with their payloads', () => {
    const calls = [
      { machine: 'm', call: 'stop', process: 'old', phase: 1 },
      { machine: 'm', call: 'replace-config', process: 'kv', phase: 2, config: spec.config, specDigest: 'c'.repeat(64) },
      { machine: 'm', call: 'start', process: 'kv', phase: 3, spec, specDigest: 'c'.repeat(64) },
    ];
    expect(parsePlanDocument(doc(calls)).calls).toEqual(calls);
  });

  it('refuses a call without its payload or of an unknown type, naming the call (PLAN_FORMAT)', () => {
    const cases: [unknown, string][] = [
      [{ machine: 'm', call: 'start', process: 'kv', phase: 3, specDigest: 'c'.repeat(64) }, 'plan.json: calls[0]: a start must carry the whole spec'],
      [{ machine: 'm', call: 'start', process: 'kv', phase: 3, spec }, 'plan.json: calls[0]: a start must carry its specDigest'],
      [{ machine: 'm', call: 'replace-config', process: 'kv', phase: 2, specDigest: 'c'.repeat(64) }, 'plan.json: calls[0]: a replace-config must carry its config'],
      [{ machine: 'm', call: 'restart', process: 'kv', phase: 2 }, 'plan.json: calls[0]: call must be start, stop or replace-config, not "restart"'],
      [{ machine: 'm', call: 'stop', process: 'kv' }, 'plan.json: calls[0]: phase must be a whole number'],
      ['stop', 'plan.json: calls[0]: not an object'],
    ];
    for (const [call, message] of cases) {
      const e = refusal(doc([call]));
      expect(e.code).toBe(ErrorCode.PLAN_FORMAT);
      expect(e.message).toContain(message);
    }
  });
});

describe('stateDigest', () => {
  it('is the sha256 of the canonical JSON of machines (agent, key) and processes (machine, digest), whatever the names', () => {
    // Names canonical JSON orders specially (array-index-like ones first) and non-ASCII ones included.
    const name = fc.oneof(fc.constantFrom('1', '10', '2', '0', '01', 'a', 'B', 'é', 'm-1', 'kv_a'), fc.string({ minLength: 1, maxLength: 6 }));
    const state = fc.record({
      machines: fc.uniqueArray(fc.record({ name, agent: fc.constantFrom('local', 'wss://10.0.0.1:7443'), key: fc.option(fc.constant('ed25519:k'), { nil: undefined }) }), { selector: (m) => m.name, maxLength: 6 }),
      processes: fc.uniqueArray(fc.record({ name, machine: name, digest: fc.constantFrom('a'.repeat(64), 'b'.repeat(64)) }), { selector: (p) => p.name, maxLength: 8 }),
    });
    fc.assert(
      fc.property(state, ({ machines, processes }) => {
        const s = {
          machines: Object.fromEntries(machines.map((m) => [m.name, { ...m, address: '127.0.0.1', capacity: {} }])),
          processes: Object.fromEntries(processes.map((p) => [p.name, { ...p, spec: {} }])),
        } as unknown as PlanState;
        const expected = sha256Hex(
          canonicalJson({
            machines: Object.fromEntries(machines.map((m) => [m.name, { agent: m.agent, key: m.key }])),
            processes: Object.fromEntries(processes.map((p) => [p.name, { machine: p.machine, digest: p.digest }])),
          }),
        );
        expect(stateDigest(s)).toBe(expected);
      }),
    );
  });
});

