import { ENFORCEMENT_LEVELS, GRANTS, REPORTED_GRANTS } from './report.js';
import type { ResultType } from './messages.js';

/*
 * Schemas of the agent's replies, checked by the client before it believes one. They require every
 * field the client reads, with its type; unknown fields (a newer agent) are allowed and ignored.
 * Apart from the code that checks them (replies.ts): the validators are generated from them
 * (generated/generate.ts), which must not import that code.
 */
const STR = { type: 'string' } as const;
const INT = { type: 'integer' } as const;
const NUM = { type: 'number' } as const;
const BOOL = { type: 'boolean' } as const;
const SHA256 = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
const nullable = (s: object) => ({ anyOf: [s, { type: 'null' }] });
const obj = (properties: Record<string, object>, required = Object.keys(properties)) => ({ type: 'object', required, properties });
const mapOf = (values: object) => ({ type: 'object', additionalProperties: values });

const enforcement = { type: 'array', items: obj({ mechanism: STR, level: { enum: ENFORCEMENT_LEVELS } }) };
// isolation: not required (an agent from before it, or a guest re-attached from before it).
const report = obj(Object.fromEntries([...GRANTS, 'isolation'].map((g) => [g, enforcement])), [...REPORTED_GRANTS]);
const exit = {
  oneOf: [
    obj({ kind: { const: 'exit' }, code: INT }),
    obj({ kind: { const: 'trap' }, message: STR }),
    obj({ kind: { const: 'signal' }, signal: STR }),
    obj({ kind: { const: 'violation' }, grant: { enum: GRANTS }, detail: STR }),
    obj({ kind: { const: 'stopped' } }),
  ],
};
const grants = obj(
  {
    cpu: NUM,
    memory: INT,
    disk: INT,
    network: obj({ listen: { type: 'array', items: INT }, connect: { type: 'array', items: STR }, udp: BOOL }, ['listen', 'connect']),
  },
  ['network'],
);
const publicSpec = obj({
  name: STR,
  binary: SHA256,
  args: { type: 'array', items: STR },
  envDigests: mapOf(SHA256),
  config: mapOf(SHA256),
  grants,
  restart: { enum: ['always', 'on-failure', 'never'] },
  isolation: { enum: ['process', 'shared'] },
  allowUnwalled: BOOL,
}, ['name', 'binary', 'args', 'envDigests', 'config', 'grants', 'restart']);
const processStatus = obj({
  name: STR,
  spec: publicSpec,
  specDigest: SHA256,
  state: { enum: ['starting', 'running', 'backoff', 'crash-loop', 'exited', 'stopped'] },
  pid: nullable(INT),
  restarts: INT,
  lastExit: nullable(exit),
  enforcement: nullable(report),
  usage: nullable(
    obj(
      { cpuSeconds: NUM, memoryBytes: NUM, level: obj({ memory: { enum: ['host', 'guest'] }, cpu: { enum: ['host', 'guest'] } }), diskBytes: NUM, diskMeasuredAt: nullable(STR), diskMeasuring: BOOL },
      ['cpuSeconds', 'memoryBytes', 'diskBytes', 'diskMeasuredAt', 'diskMeasuring'],
    ),
  ),
  nextRestart: nullable(STR),
  host: nullable(STR),
  // host: not required (an agent from before it).
}, ['name', 'spec', 'specDigest', 'state', 'pid', 'restarts', 'lastExit', 'enforcement', 'usage', 'nextRestart']);
const capabilities = obj({
  root: BOOL,
  cgroup: nullable({ enum: ['v1', 'v2'] }),
  controllers: { type: 'array', items: STR },
  nftables: BOOL,
  diskImages: BOOL,
  wall: nullable({ enum: ['root', 'userns'] }),
  unavailable: mapOf(STR),
});
const changed = (withPid: boolean) => obj({ changed: BOOL, ...(withPid ? { pid: nullable(INT) } : {}) }, ['changed']);
const empty = { type: 'object' };

export const resultSchemas: { [T in ResultType]: object } = {
  authenticate: obj({ key: STR, role: { enum: ['read', 'write'] } }),
  status: obj(
    {
      agent: STR,
      generation: INT,
      startedAt: STR,
      capabilities,
      processes: { type: 'array', items: processStatus },
      stateDisk: obj({ dir: STR, freeBytes: NUM, totalBytes: NUM, reserveBytes: NUM }),
      audit: obj({ writable: BOOL, entries: INT, failures: INT, error: STR, notice: STR }, ['writable', 'entries', 'failures']),
      recovered: { type: 'array', items: STR },
    },
    ['agent', 'generation', 'startedAt', 'capabilities', 'processes'],
  ),
  start: changed(true),
  stop: changed(false),
  'replace-config': changed(true),
  'blob-status': obj({ present: { type: 'array', items: SHA256 }, partial: mapOf(INT) }),
  'put-blob': obj({ complete: BOOL }),
  logs: empty,
  watch: empty,
  batch: obj({ calls: INT }),
};

const event = obj(
  {
    kind: { enum: ['started', 'exited', 'died', 'restarted', 'grant-violated', 'crash-loop', 'stopped'] },
    process: STR,
    at: STR,
    pid: INT,
    grant: { enum: GRANTS },
    detail: STR,
  },
  ['kind', 'process', 'at'],
);
export const replySchema = {
  type: 'object',
  required: ['type'],
  discriminator: { propertyName: 'type' },
  oneOf: [
    obj({ type: { const: 'hello' }, id: STR, agent: STR, generation: INT, proof: STR, binding: { enum: ['tls-exporter', 'none'] }, batch: { type: 'integer', minimum: 1 } }, ['type', 'id', 'agent', 'generation', 'proof', 'binding']),
    obj({ type: { const: 'result' }, id: STR, generation: INT, result: { type: 'object' } }),
    obj({ type: { const: 'error' }, id: nullable(STR), error: obj({ code: STR, message: STR, details: { type: 'object' } }, ['code', 'message']) }),
    obj({ type: { const: 'event' }, id: STR, event }),
    obj({ type: { const: 'log' }, id: STR, line: STR }),
  ],
};

/** The generated validator of a call's result is exported under this name (`status` -> `result_status`). */
export function resultExport(type: string): string {
  return `result_${type.replace(/[^A-Za-z0-9_]/g, '_')}`;
}
