import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { ErrorCode, LowcloudError } from '../errors.js';
import { ENFORCEMENT_LEVELS, GRANTS, REPORTED_GRANTS } from './report.js';
import type { Reply, Results, ResultType } from './messages.js';

/**
 * Schemas of the agent's replies, checked by the client before it believes one. They require every
 * field the client reads, with its type; unknown fields (a newer agent) are allowed and ignored.
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
  usage: nullable(obj({ cpuSeconds: NUM, memoryBytes: NUM, diskBytes: NUM, diskMeasuredAt: nullable(STR), diskMeasuring: BOOL })),
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
    obj({ type: { const: 'hello' }, id: STR, agent: STR, generation: INT, proof: STR, binding: { enum: ['tls-exporter', 'none'] } }),
    obj({ type: { const: 'result' }, id: STR, generation: INT, result: { type: 'object' } }),
    obj({ type: { const: 'error' }, id: nullable(STR), error: obj({ code: STR, message: STR, details: { type: 'object' } }, ['code', 'message']) }),
    obj({ type: { const: 'event' }, id: STR, event }),
    obj({ type: { const: 'log' }, id: STR, line: STR }),
  ],
};

// validateSchema off: checking this schema against JSON Schema's meta-schema compiled the
// meta-schema first, 15-30 ms of every process that parses one (the agent at its first request,
// each command at its first reply); the check is a test now (protocol/schema.test.ts).
const ajv = new Ajv({ allErrors: false, strict: false, discriminator: true, validateSchema: false });
// Compiled at the first reply parsed, not at import (~70 ms): an agent imports this module and
// never parses a reply, and neither do the commands that reach no agent.
let compiledReply: ValidateFunction<Reply> | undefined;
const replyValidator = (): ValidateFunction<Reply> => (compiledReply ??= ajv.compile(replySchema) as unknown as ValidateFunction<Reply>);
// Each compiled at its first use: a command makes a few kinds of call, not all of them.
const validateResult = new Map<ResultType, ValidateFunction>();

/** Parse one reply frame from an agent; an invalid one is an error naming the field. */
export function parseReply(text: string): Reply {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LowcloudError(ErrorCode.BAD_REPLY, `the agent sent malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const validate = replyValidator();
  if (validate(value)) return value;
  throw badReply('reply', validate.errors ?? []);
}

/** Check the result of a call against what that call returns. */
export function parseResult<T extends ResultType>(type: T, result: unknown): Results[T] {
  let compiled = validateResult.get(type);
  if (compiled === undefined) {
    compiled = ajv.compile(resultSchemas[type] as object);
    validateResult.set(type, compiled);
  }
  const validate = compiled as ValidateFunction<Results[T]>;
  if (validate(result)) return result;
  throw badReply(`${type} result`, validate.errors ?? []);
}

function badReply(what: string, errors: ErrorObject[]): LowcloudError {
  const e = errors[0];
  const path = e === undefined ? '' : `${e.instancePath}${e.keyword === 'required' ? `/${String(e.params.missingProperty)}` : ''}`;
  return new LowcloudError(ErrorCode.BAD_REPLY, `the agent sent an invalid ${what} at ${path || '/'}: ${e?.keyword === 'required' ? 'missing field' : (e?.message ?? 'invalid')}`, {
    details: { path: path.replace(/^\//, '').replace(/\//g, '.') },
  });
}
