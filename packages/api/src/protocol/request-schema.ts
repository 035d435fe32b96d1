import type { JSONSchemaType } from 'ajv';
import type { RequestAuth } from '../signing.js';
import type { ProcessSpec } from '../spec.js';
import { MAX_BATCH_CALLS } from './messages.js';

// The schema of a request, apart from the code that checks one (schema.ts): the validator is
// generated from it (generated/generate.ts), which must not import the code it generates.

const SHA256 = { type: 'string', pattern: '^[0-9a-f]{64}$' } as const;
/**
 * Keys that change what a JavaScript object is rather than what it holds. JSON.parse makes them
 * ordinary own properties, but spreading, assigning or canonicalizing such an object can drop or
 * reinterpret them, so a signature over the canonical form would not cover them: refused anywhere.
 */
export const FORBIDDEN_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype'];
const MAP_KEY = { not: { enum: FORBIDDEN_KEYS } } as const;
const NAME = { type: 'string', pattern: '^[a-z0-9][a-z0-9._-]{0,62}$' } as const;
const ID = { type: 'string', minLength: 1, maxLength: 128 } as const;
export const CONNECT_FORMAT = 'connect-target';

const auth: JSONSchemaType<RequestAuth> = {
  type: 'object',
  additionalProperties: false,
  required: ['key', 'generation', 'timestamp', 'nonce', 'signature'],
  properties: {
    key: { type: 'string', maxLength: 100 },
    generation: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
    // The last millisecond a Date can hold: past it the agent could not even name the time.
    timestamp: { type: 'integer', minimum: 0, maximum: 8.64e15 },
    nonce: { type: 'string', minLength: 16, maxLength: 64 },
    signature: { type: 'string', maxLength: 200 },
  },
};

export const processSpecSchema: JSONSchemaType<ProcessSpec> = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'binary', 'args', 'env', 'config', 'grants', 'restart'],
  properties: {
    name: NAME,
    binary: SHA256,
    args: { type: 'array', items: { type: 'string' }, maxItems: 1000 },
    env: { type: 'object', propertyNames: MAP_KEY, additionalProperties: { type: 'string' }, required: [] },
    config: { type: 'object', propertyNames: { pattern: '^/' }, additionalProperties: SHA256, required: [] },
    grants: {
      type: 'object',
      additionalProperties: false,
      required: ['network'],
      properties: {
        cpu: { type: 'number', exclusiveMinimum: 0, nullable: true },
        memory: { type: 'integer', minimum: 65536, nullable: true },
        disk: { type: 'integer', minimum: 0, nullable: true },
        gpu: {
          type: 'object',
          additionalProperties: false,
          required: ['memory'],
          nullable: true,
          properties: { memory: { type: 'integer', minimum: 1 }, submitSeconds: { type: 'number', exclusiveMinimum: 0, nullable: true } },
        },
        network: {
          type: 'object',
          additionalProperties: false,
          required: ['listen', 'connect'],
          properties: {
            listen: { type: 'array', items: { type: 'integer', minimum: 1, maximum: 65535 } },
            // Canonical targets, sorted, each once (normalizeConnect): one grant, one spelling, one digest.
            connect: { type: 'array', items: { type: 'string', maxLength: 300, format: CONNECT_FORMAT }, sortedDistinct: true },
            udp: { type: 'boolean', nullable: true },
          },
        },
      },
    },
    restart: { type: 'string', enum: ['always', 'on-failure', 'never'] },
    isolation: { type: 'string', enum: ['process', 'shared'], nullable: true },
    // Only true (absent otherwise): one spelling, one digest.
    allowUnwalled: { type: 'boolean', enum: [true], nullable: true },
  },
};

const authProp = { ...auth, nullable: true };

/** The calls that change desired state (`BATCHED_CALLS`): with an optional `auth`, or, in a batch, with none. */
function changeCalls(signed: boolean): object[] {
  const a = signed ? { auth: authProp } : {};
  return [
    { type: 'object', additionalProperties: false, required: ['type', 'id', 'spec'], properties: { type: { const: 'start' }, id: ID, spec: processSpecSchema, ...a } },
    { type: 'object', additionalProperties: false, required: ['type', 'id', 'process'], properties: { type: { const: 'stop' }, id: ID, process: NAME, graceMs: { type: 'integer', minimum: 0, maximum: 600000 }, ...a } },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'id', 'process', 'config', 'specDigest'],
      properties: { type: { const: 'replace-config' }, id: ID, process: NAME, config: { type: 'object', propertyNames: { pattern: '^/' }, additionalProperties: SHA256, required: [] }, specDigest: SHA256, ...a },
    },
  ];
}

/**
 * Every request the agent takes, one closed schema per type. Exported for tests that walk every
 * field; the agent validates with the compiled form of `withoutNull(requestSchema)`.
 */
export const requestSchema: object = {
  type: 'object',
  required: ['type', 'id'],
  discriminator: { propertyName: 'type' },
  oneOf: [
    { type: 'object', additionalProperties: false, required: ['type', 'id', 'challenge'], properties: { type: { const: 'hello' }, id: ID, challenge: { type: 'string', minLength: 16, maxLength: 128 } } },
    { type: 'object', additionalProperties: false, required: ['type', 'id'], properties: { type: { const: 'authenticate' }, id: ID, auth: authProp } },
    { type: 'object', additionalProperties: false, required: ['type', 'id'], properties: { type: { const: 'status' }, id: ID, auth: authProp } },
    ...changeCalls(true),
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'id', 'calls'],
      properties: {
        type: { const: 'batch' },
        id: ID,
        // Each call without an `auth` of its own: the batch's signature covers them (messages.ts).
        calls: { type: 'array', minItems: 1, maxItems: MAX_BATCH_CALLS, items: { type: 'object', required: ['type', 'id'], discriminator: { propertyName: 'type' }, oneOf: changeCalls(false) } },
        auth: authProp,
      },
    },
    { type: 'object', additionalProperties: false, required: ['type', 'id', 'digests'], properties: { type: { const: 'blob-status' }, id: ID, digests: { type: 'array', items: SHA256, maxItems: 10000 }, auth: authProp } },
    {
      type: 'object',
      additionalProperties: false,
      required: ['type', 'id', 'digest', 'size', 'offset'],
      properties: {
        type: { const: 'put-blob' },
        id: ID,
        digest: SHA256,
        size: { type: 'integer', minimum: 0 },
        offset: { type: 'integer', minimum: 0 },
        data: { type: 'string' },
        chunk: { type: 'object', additionalProperties: false, required: ['bytes', 'sha256'], properties: { bytes: { type: 'integer', minimum: 0 }, sha256: SHA256 } },
        auth: authProp,
      },
    },
    { type: 'object', additionalProperties: false, required: ['type', 'id', 'process'], properties: { type: { const: 'logs' }, id: ID, process: NAME, tail: { type: 'integer', minimum: 0, maximum: 100000 }, follow: { type: 'boolean' }, auth: authProp } },
    { type: 'object', additionalProperties: false, required: ['type', 'id'], properties: { type: { const: 'watch' }, id: ID, auth: authProp } },
  ],
};

/**
 * The schema with every `nullable` dropped. JSONSchemaType writes an optional field as nullable,
 * but on the wire an optional field is left out: a `null` would reach code that reads it as absent
 * or as a value (`auth: null` a TypeError, `grants.memory: null` arithmetic), so none is taken.
 */
export function withoutNull(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(withoutNull);
  if (schema === null || typeof schema !== 'object') return schema;
  return Object.fromEntries(Object.entries(schema).filter(([k]) => k !== 'nullable').map(([k, v]) => [k, withoutNull(v)]));
}
