import { Ajv } from 'ajv';
import { describe, expect, it } from 'vitest';
import { LowcloudError } from '../errors.js';
import { findForbiddenKey, parseRequest, requestSchema } from './schema.js';
import { parseReply, parseResult, replySchema, resultSchemas } from './replies.js';

describe('the protocol schemas', () => {
  // The validators are compiled without checking the schemas against JSON Schema's meta-schema
  // (it cost every process 15-30 ms): the check is here.
  it('are valid JSON Schema (draft-07 meta-schema)', () => {
    const ajv = new Ajv({ strict: false });
    for (const [name, schema] of [['request', requestSchema], ['reply', replySchema], ...Object.entries(resultSchemas).map(([t, s]) => [`${t} result`, s] as const)] as const) {
      expect(ajv.validateSchema(schema as object), `${name}: ${ajv.errorsText()}`).toBe(true);
    }
  });
});

const spec = { name: 'p', binary: 'a'.repeat(64), args: [], env: { A: '1' }, config: {}, grants: { network: { listen: [], connect: [] } }, restart: 'always' };

function codeAndPath(f: () => unknown): { code: string; path: unknown } {
  try {
    f();
  } catch (err) {
    return { code: (err as LowcloudError).code, path: (err as LowcloudError).details?.path };
  }
  throw new Error('did not throw');
}

describe('parseRequest', () => {
  it('accepts each request type and rejects unknown fields, types and bad values with the field path', () => {
    expect(parseRequest({ type: 'start', id: '1', spec }).type).toBe('start');
    expect(parseRequest({ type: 'authenticate', id: '1' }).type).toBe('authenticate');
    expect(codeAndPath(() => parseRequest({ type: 'status', id: '1', extra: 1 }))).toEqual({ code: 'BAD_MESSAGE', path: 'extra' });
    expect(codeAndPath(() => parseRequest({ type: 'nope', id: '1' })).code).toBe('BAD_MESSAGE');
    expect(codeAndPath(() => parseRequest({ type: 'start', id: '1', spec: { ...spec, binary: 'xyz' } }))).toEqual({ code: 'BAD_MESSAGE', path: 'spec.binary' });
    expect(codeAndPath(() => parseRequest({ type: 'stop', id: '1' }))).toEqual({ code: 'BAD_MESSAGE', path: 'process' });
    expect(codeAndPath(() => parseRequest([1, 2])).code).toBe('BAD_MESSAGE');
    expect(codeAndPath(() => parseRequest(null)).code).toBe('BAD_MESSAGE');
  });

  it('refuses null for optional fields (it would reach code as neither absent nor a value)', () => {
    expect(codeAndPath(() => parseRequest({ type: 'status', id: '1', auth: null }))).toEqual({ code: 'BAD_MESSAGE', path: 'auth' });
    expect(codeAndPath(() => parseRequest({ type: 'start', id: '1', spec: { ...spec, grants: { memory: null, network: { listen: [], connect: [] } } } }))).toEqual({ code: 'BAD_MESSAGE', path: 'spec.grants.memory' });
    expect(codeAndPath(() => parseRequest({ type: null, id: '1' }))).toEqual({ code: 'BAD_MESSAGE', path: 'type' });
    expect(() => parseRequest({ type: 'stop', id: '1', process: 'p', graceMs: null })).toThrow('invalid request at /graceMs: null is not a value here');
  });

  it('refuses __proto__, constructor and prototype keys anywhere, naming where', () => {
    for (const k of ['__proto__', 'constructor', 'prototype']) {
      const value = JSON.parse(`{"type":"start","id":"1","spec":${JSON.stringify(spec).replace('"env":{"A":"1"}', `"env":{"A":"1","${k}":"x"}`)}}`) as unknown;
      expect(codeAndPath(() => parseRequest(value)), k).toEqual({ code: 'BAD_MESSAGE', path: `spec.env.${k}` });
    }
    const top = JSON.parse('{"type":"status","id":"1","__proto__":{"x":1}}') as unknown;
    expect(codeAndPath(() => parseRequest(top))).toEqual({ code: 'BAD_MESSAGE', path: '__proto__' });
  });

  it('a start carries connect targets in canonical form, sorted and distinct, or it is refused naming the entry', () => {
    const withConnect = (connect: string[]) => ({ type: 'start', id: '1', spec: { ...spec, grants: { network: { listen: [], connect } } } });
    expect(parseRequest(withConnect(['10.0.0.0/8:6379', '[::1]:80', 'db.internal:5432'])).type).toBe('start');
    for (const [connect, path] of [
      [['bogus'], 'spec.grants.network.connect.0'],
      [['10.0.0.6:5432', 'DB:5432'], 'spec.grants.network.connect.1'],
      [['10.1.2.3/8:80'], 'spec.grants.network.connect.0'],
      [['[0::1]:80'], 'spec.grants.network.connect.0'],
      [['db:1', '10.0.0.6:5432'], 'spec.grants.network.connect'],
      [['db:1', 'db:1'], 'spec.grants.network.connect'],
    ] as const) {
      expect(codeAndPath(() => parseRequest(withConnect([...connect]))), connect.join(' ')).toEqual({ code: 'BAD_MESSAGE', path });
    }
    expect(() => parseRequest(withConnect(['bogus']))).toThrow('invalid request at /spec/grants/network/connect/0: not a connect target in canonical form');
    expect(() => parseRequest(withConnect(['db:1', '10.0.0.6:5432']))).toThrow('invalid request at /spec/grants/network/connect: connect targets must be sorted and distinct');
  });

  it('findForbiddenKey walks any depth without recursion', () => {
    let deep: unknown = JSON.parse('{"__proto__":1}');
    for (let i = 0; i < 100_000; i++) deep = { a: deep };
    expect(findForbiddenKey(deep)?.length).toBe(100_001);
    expect(findForbiddenKey({ a: [{ b: 1 }, { c: { d: 2 } }] })).toBeNull();
  });
});

describe('replies are checked before the client uses them', () => {
  it('parses valid replies and names the field of an invalid one', () => {
    expect(parseReply('{"type":"log","id":"1","line":"x"}').type).toBe('log');
    expect(() => parseReply('{"type":"log","id":"1"}')).toThrow(/invalid reply at \/line: missing field/);
    expect(() => parseReply('not json')).toThrow(/malformed JSON/);
    expect(parseResult('start', { changed: true, pid: 3 })).toEqual({ changed: true, pid: 3 });
    expect(() => parseResult('start', { changed: 'yes' })).toThrow(/invalid start result at \/changed/);
    expect(() => parseResult('blob-status', { present: ['nothex'], partial: {} })).toThrow(/blob-status result at \/present\/0/);
  });

  it('a status reply must carry env digests, not values, and typed exits and reports', () => {
    const p = { name: 'p', spec: { ...spec, env: undefined, envDigests: { A: 'b'.repeat(64) } }, specDigest: 'c'.repeat(64), state: 'running', pid: 1, restarts: 0, lastExit: { kind: 'violation', grant: 'memory', detail: 'oom' }, enforcement: { memory: [{ mechanism: 'm', level: 'kernel' }], cpu: [], disk: [], network: [] }, usage: null, nextRestart: null };
    const st = { agent: 'k', generation: 1, startedAt: 'now', capabilities: { root: true, cgroup: 'v2', controllers: [], nftables: false, diskImages: false, wall: null, unavailable: { wall: 'bwrap is not installed' } }, processes: [p] };
    expect(parseResult('status', st).processes[0]?.lastExit).toEqual({ kind: 'violation', grant: 'memory', detail: 'oom' });
    expect(() => parseResult('status', { ...st, processes: [{ ...p, spec: { ...p.spec, envDigests: { A: 'secret' } } }] })).toThrow(/envDigests\/A/);
    expect(() => parseResult('status', { ...st, processes: [{ ...p, lastExit: { kind: 'violation', grant: 'bogus', detail: '' } }] })).toThrow(/lastExit/);
    expect(() => parseResult('status', { ...st, processes: [{ ...p, enforcement: { ...p.enforcement, cpu: [{ mechanism: 'x', level: 'strong' }] } }] })).toThrow(/enforcement\/cpu\/0\/level/);
  });
});
