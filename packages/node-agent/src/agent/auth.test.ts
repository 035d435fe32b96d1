import { describe, expect, it } from 'vitest';
import { generateKeyPair, signRequest, type Request, type Role } from '@lowcloud/api';
import { parseRequest } from '@lowcloud/api/requests';
import { MAX_SKEW_MS, RequestAuthenticator } from './auth.js';

const agent = generateKeyPair().publicKey;
const writer = generateKeyPair();
const reader = generateKeyPair();
let now = 1_800_000_000_000;
const auth = () => new RequestAuthenticator(agent, new Map<string, Role>([[writer.publicKey, 'write'], [reader.publicKey, 'read']]), () => now);

function signed(req: object, key = writer, generation = 0, at = now): Exclude<Request, { type: 'hello' }> {
  return parseRequest({ ...req, auth: signRequest(req, agent, generation, key, at) }) as Exclude<Request, { type: 'hello' }>;
}
const codeOf = (f: () => unknown) => {
  try {
    f();
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
};

describe('RequestAuthenticator', () => {
  it('every call but hello needs a trusted key; read keys read, write keys do everything', () => {
    const a = auth();
    expect(codeOf(() => a.check(parseRequest({ type: 'status', id: '1' }) as Exclude<Request, { type: 'hello' }>))).toBe('UNAUTHENTICATED');
    expect(codeOf(() => a.check(signed({ type: 'status', id: '2' }, generateKeyPair())))).toBe('UNKNOWN_KEY');
    expect(a.check(signed({ type: 'status', id: '3' }, reader)).role).toBe('read');
    for (const t of [{ type: 'logs', id: '4', process: 'p' }, { type: 'watch', id: '5' }, { type: 'blob-status', id: '6', digests: [] }, { type: 'authenticate', id: '7' }]) {
      expect(codeOf(() => a.check(signed(t, reader))), t.type).toBe('ok');
    }
    expect(codeOf(() => a.check(signed({ type: 'stop', id: '8', process: 'p' }, reader)))).toBe('FORBIDDEN');
    expect(codeOf(() => a.check(signed({ type: 'put-blob', id: '9', digest: 'a'.repeat(64), size: 1, offset: 0, data: 'eA==' }, reader)))).toBe('FORBIDDEN');
    expect(a.check(signed({ type: 'stop', id: '10', process: 'p' })).role).toBe('write');
    expect(a.check(signed({ type: 'status', id: '11' })).role).toBe('write');
  });

  it('refuses a tampered body, another agent, an old or future timestamp, a replayed nonce', () => {
    const a = auth();
    const req = signed({ type: 'stop', id: 't', process: 'p' });
    expect(codeOf(() => a.check({ ...req, process: 'q' } as typeof req))).toBe('BAD_SIGNATURE');
    const other = parseRequest({ type: 'stop', id: 'o', process: 'p', auth: signRequest({ type: 'stop', id: 'o', process: 'p' }, generateKeyPair().publicKey, 0, writer, now) }) as typeof req;
    expect(codeOf(() => a.check(other))).toBe('BAD_SIGNATURE');
    expect(codeOf(() => a.check(signed({ type: 'status', id: 'old' }, writer, 0, now - MAX_SKEW_MS - 1)))).toBe('EXPIRED');
    expect(codeOf(() => a.check(signed({ type: 'status', id: 'new' }, writer, 0, now + MAX_SKEW_MS + 1)))).toBe('EXPIRED');
    // The figure in docs/security.md: clocks 4 minutes apart work, 6 minutes apart do not.
    expect(MAX_SKEW_MS).toBe(5 * 60_000);
    for (const [id, off, code] of [['m4', -4, 'ok'], ['p4', 4, 'ok'], ['m6', -6, 'EXPIRED'], ['p6', 6, 'EXPIRED']] as const) {
      expect(codeOf(() => a.check(signed({ type: 'status', id }, writer, 0, now + off * 60_000))), id).toBe(code);
    }
    expect(codeOf(() => a.check(req))).toBe('ok');
    expect(codeOf(() => a.check(req))).toBe('REPLAYED');
  });

  it('forgets nonces once they could only be expired, and still refuses them', () => {
    const a = auth();
    const req = signed({ type: 'status', id: 'n' });
    a.check(req);
    now += MAX_SKEW_MS + 20_000;
    a.check(signed({ type: 'status', id: 'sweep' }));
    expect(codeOf(() => a.check(req))).toBe('EXPIRED');
  });

  it('calls that change desired state must be made against the current generation (put-blob and reads need not)', () => {
    const stop = signed({ type: 'stop', id: 'g', process: 'p' }, writer, 2);
    expect(codeOf(() => RequestAuthenticator.checkGeneration(stop, stop.auth!, 2))).toBe('ok');
    expect(codeOf(() => RequestAuthenticator.checkGeneration(stop, stop.auth!, 3))).toBe('STALE_GENERATION');
    const blob = signed({ type: 'put-blob', id: 'b', digest: 'a'.repeat(64), size: 1, offset: 0, data: 'eA==' }, writer, 0);
    expect(codeOf(() => RequestAuthenticator.checkGeneration(blob, blob.auth!, 9))).toBe('ok');
    const st = signed({ type: 'status', id: 's' }, writer, 0);
    expect(codeOf(() => RequestAuthenticator.checkGeneration(st, st.auth!, 9))).toBe('ok');
  });
});
