import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@lowcloud/api';
import { BlobStore } from './blob-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
function store(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-blobs-'))): { s: BlobStore; dir: string } {
  dirs.push(dir);
  return { s: new BlobStore(dir), dir };
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const data = Buffer.from('0123456789abcdefghij'.repeat(100)); // 2000 bytes
const digest = sha(data);

describe('BlobStore', () => {
  it('takes a blob in chunks; it becomes visible only when the last chunk makes it hash to its name', () => {
    const { s } = store();
    expect(s.put(digest, data.length, 0, data.subarray(0, 700))).toBe(false);
    expect([s.has(digest), s.partialSize(digest)]).toEqual([false, 700]);
    expect(fs.existsSync(s.path(digest))).toBe(false);
    expect(s.put(digest, data.length, 700, data.subarray(700, 1400))).toBe(false);
    expect(s.put(digest, data.length, 1400, data.subarray(1400))).toBe(true);
    expect([s.has(digest), s.partialSize(digest)]).toEqual([true, undefined]);
    expect(fs.readFileSync(s.path(digest))).toEqual(data);
  });

  it('resumes an interrupted upload at its offset, also in a new store on the same directory (an agent restart)', () => {
    const { s, dir } = store();
    s.put(digest, data.length, 0, data.subarray(0, 1000));
    const again = new BlobStore(dir);
    expect(again.partialSize(digest)).toBe(1000);
    expect(again.put(digest, data.length, 1000, data.subarray(1000))).toBe(true);
    expect(fs.readFileSync(again.path(digest))).toEqual(data);
  });

  it('refuses a chunk at another offset than the bytes it has, saying where to resume, and keeps what it has', () => {
    const { s } = store();
    s.put(digest, data.length, 0, data.subarray(0, 500));
    for (const offset of [0, 400, 600]) {
      let err: unknown;
      try {
        s.put(digest, data.length, offset, data.subarray(offset, offset + 100));
      } catch (e) {
        err = e;
      }
      expect(err).toMatchObject({ code: ErrorCode.INVALID_INPUT, details: { expectedOffset: 500 } });
      expect(String((err as Error).message)).toContain('resume from 500');
    }
    expect(s.partialSize(digest)).toBe(500);
  });

  it('refuses more bytes than the declared size, writing none of them', () => {
    const { s } = store();
    expect(() => s.put(digest, 10, 0, data.subarray(0, 11))).toThrow(expect.objectContaining({ code: ErrorCode.INVALID_INPUT, message: expect.stringContaining('more bytes than the declared size 10') }));
    expect(s.partialSize(digest)).toBeUndefined();
  });

  it('bytes that hash to something else: DIGEST_MISMATCH naming both digests; nothing stored, the partial file dropped', () => {
    const { s } = store();
    const wrong = Buffer.from(data);
    wrong[5] = 0;
    expect(() => s.put(digest, wrong.length, 0, wrong)).toThrow(expect.objectContaining({ code: ErrorCode.DIGEST_MISMATCH, details: { expected: digest, actual: sha(wrong) } }));
    expect([s.has(digest), s.partialSize(digest)]).toEqual([false, undefined]);
    // A correct upload afterwards starts from 0 and succeeds.
    expect(s.put(digest, data.length, 0, data)).toBe(true);
  });

  it('a blob it already has is complete at once; its bytes are not touched', () => {
    const { s } = store();
    s.put(digest, data.length, 0, data);
    const before = fs.statSync(s.path(digest)).mtimeMs;
    expect(s.put(digest, data.length, 0, Buffer.from('ignored'))).toBe(true);
    expect(fs.readFileSync(s.path(digest))).toEqual(data);
    expect(fs.statSync(s.path(digest)).mtimeMs).toBe(before);
  });
});
