import { describe, expect, it } from 'vitest';
import { ErrorCode } from '@lowcloud/api';
import { PlanFormatError } from '../errors.js';
import { parsePlanDocument, PLAN_FORMAT_VERSION } from './document.js';

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
