import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ErrorCode } from '@lowcloud/api';
import { BlobStore } from './blob-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const dirs: string[] = [];
function store(dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-blobs-')), maxBytes?: number): { s: BlobStore; dir: string } {
  dirs.push(dir);
  return { s: new BlobStore(dir, maxBytes), dir };
}
afterEach(() => {
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
});

const data = Buffer.from('0123456789abcdefghij'.repeat(100)); // 2000 bytes
const digest = sha(data);

describe('BlobStore', () => {
  it('takes a blob in chunks; it becomes visible only when the last chunk makes it hash to its name', async () => {
    const { s } = store();
    expect(await s.put(digest, data.length, 0, data.subarray(0, 700))).toBe(false);
    expect([s.has(digest), s.partialSize(digest)]).toEqual([false, 700]);
    expect(fs.existsSync(s.path(digest))).toBe(false);
    expect(await s.put(digest, data.length, 700, data.subarray(700, 1400))).toBe(false);
    expect(await s.put(digest, data.length, 1400, data.subarray(1400))).toBe(true);
    expect([s.has(digest), s.partialSize(digest)]).toEqual([true, undefined]);
    expect(fs.readFileSync(s.path(digest))).toEqual(data);
  });

  it('resumes an interrupted upload at its offset, also in a new store on the same directory (an agent restart)', async () => {
    const { s, dir } = store();
    await s.put(digest, data.length, 0, data.subarray(0, 1000));
    const again = new BlobStore(dir);
    expect(again.partialSize(digest)).toBe(1000);
    expect(await again.put(digest, data.length, 1000, data.subarray(1000))).toBe(true);
    expect(fs.readFileSync(again.path(digest))).toEqual(data);
    expect(new BlobStore(dir).has(digest)).toBe(true);
  });

  it('refuses a chunk at another offset than the bytes it has, saying where to resume, and keeps what it has', async () => {
    const { s } = store();
    await s.put(digest, data.length, 0, data.subarray(0, 500));
    for (const offset of [0, 400, 600]) {
      const err: unknown = await s.put(digest, data.length, offset, data.subarray(offset, offset + 100)).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: ErrorCode.INVALID_INPUT, details: { expectedOffset: 500 } });
      expect(String((err as Error).message)).toContain('resume from 500');
    }
    expect(s.partialSize(digest)).toBe(500);
  });

  it('refuses more bytes than the declared size, writing none of them', async () => {
    const { s } = store();
    await expect(s.put(digest, 10, 0, data.subarray(0, 11))).rejects.toMatchObject({ code: ErrorCode.INVALID_INPUT, message: expect.stringContaining('more bytes than the declared size 10') });
    expect(s.partialSize(digest)).toBeUndefined();
  });

  it('refuses a declared size past its cap before writing anything, naming the flag that raises it', async () => {
    const { s, dir } = store(undefined, 1000);
    await expect(s.put(digest, data.length, 0, data.subarray(0, 100))).rejects.toMatchObject({
      code: ErrorCode.INVALID_INPUT,
      message: expect.stringContaining('--max-blob-size'),
      details: { size: 2000, maxBytes: 1000 },
    });
    expect(fs.readdirSync(path.join(dir, 'blobs', 'partial'))).toEqual([]);
  });

  it('bytes that hash to something else: DIGEST_MISMATCH naming both digests; nothing stored, the partial file dropped', async () => {
    const { s } = store();
    const wrong = Buffer.from(data);
    wrong[5] = 0;
    await expect(s.put(digest, wrong.length, 0, wrong)).rejects.toMatchObject({ code: ErrorCode.DIGEST_MISMATCH, details: { expected: digest, actual: sha(wrong) } });
    expect([s.has(digest), s.partialSize(digest)]).toEqual([false, undefined]);
    // A correct upload afterwards starts from 0 and succeeds.
    expect(await s.put(digest, data.length, 0, data)).toBe(true);
  });

  it('a wrong byte in a middle chunk is caught by the hash kept as the chunks arrive: DIGEST_MISMATCH, nothing stored', async () => {
    const { s } = store();
    const wrong = Buffer.from(data);
    wrong[900] = 0;
    await s.put(digest, data.length, 0, wrong.subarray(0, 700));
    await s.put(digest, data.length, 700, wrong.subarray(700, 1400));
    await expect(s.put(digest, data.length, 1400, wrong.subarray(1400))).rejects.toMatchObject({ code: ErrorCode.DIGEST_MISMATCH, details: { expected: digest, actual: sha(wrong) } });
    expect([s.has(digest), s.partialSize(digest)]).toEqual([false, undefined]);
  });

  it('a chunk taken back (undo) and sent again, and a resumed upload whose file changed while the agent was down, are checked from the file', async () => {
    const { s, dir } = store();
    await s.put(digest, data.length, 0, data.subarray(0, 1000));
    await s.put(digest, data.length, 1000, data.subarray(1000, 1500));
    s.undo(digest, 1000);
    await s.put(digest, data.length, 1000, data.subarray(1000, 1500));
    expect(await s.put(digest, data.length, 1500, data.subarray(1500))).toBe(true);
    expect(fs.readFileSync(s.path(digest))).toEqual(data);

    const other = Buffer.from('klmnopqrst'.repeat(100));
    const otherDigest = sha(other);
    await s.put(otherDigest, other.length, 0, other.subarray(0, 600));
    const partial = path.join(dir, 'blobs', 'partial', otherDigest);
    fs.writeFileSync(partial, Buffer.concat([Buffer.from('X'), other.subarray(1, 600)]));
    const restarted = new BlobStore(dir);
    await expect(restarted.put(otherDigest, other.length, 600, other.subarray(600))).rejects.toMatchObject({ code: ErrorCode.DIGEST_MISMATCH });
    expect(restarted.has(otherDigest)).toBe(false);
  });

  it('a blob it already has is complete at once; its bytes are not touched', async () => {
    const { s } = store();
    await s.put(digest, data.length, 0, data);
    const before = fs.statSync(s.path(digest)).mtimeMs;
    expect(await s.put(digest, data.length, 0, Buffer.from('ignored'))).toBe(true);
    expect(fs.readFileSync(s.path(digest))).toEqual(data);
    expect(fs.statSync(s.path(digest)).mtimeMs).toBe(before);
  });

  it('a blob is 0644 whatever the umask (a guest host reads its config blob as its own uid, through a bind mount)', async () => {
    const { s } = store();
    const old = process.umask(0o077);
    try {
      await s.put(digest, data.length, 0, data);
    } finally {
      process.umask(old);
    }
    expect(fs.statSync(s.path(digest)).mode & 0o777).toBe(0o644);
    expect(fs.statSync(s.dir).mode & 0o777).toBe(0o700);
  });

  it('a blob removed from disk by hand is missing again (it is uploaded anew, never handed to a guest host)', async () => {
    const { s } = store();
    await s.put(digest, data.length, 0, data);
    fs.rmSync(s.path(digest));
    expect(s.has(digest)).toBe(false);
    expect(await s.put(digest, data.length, 0, data)).toBe(true);
    expect(s.has(digest)).toBe(true);
  });
});

describe('BlobStore: partial uploads against what the audit log accepted', () => {
  it('a chunk stored but never given its audit line (the agent died between) is cut off at start; the upload resumes before it', async () => {
    const { s, dir } = store();
    await s.put(digest, data.length, 0, data.subarray(0, 500));
    await s.put(digest, data.length, 500, data.subarray(500, 1000));
    const other = sha(Buffer.from('other'));
    await s.put(other, 2000, 0, data.subarray(0, 300)); // no line at all
    const since = Date.now() - 60_000;
    const again = new BlobStore(dir);
    const notes = again.trimUnaccepted({ since, accepted: new Map([[digest, 500]]) });
    expect(notes).toEqual([expect.stringMatching(/cut from 1000 to 500 bytes/), expect.stringMatching(/cut from 300 to 0 bytes/)]);
    expect([again.partialSize(digest), again.partialSize(other)]).toEqual([500, undefined]);
    expect(fs.statSync(path.join(dir, 'blobs/partial', digest)).size).toBe(500);
    expect(fs.existsSync(path.join(dir, 'blobs/partial', other))).toBe(false);
    // Resumed where the log says: the blob completes and hashes to its name.
    expect(await again.put(digest, data.length, 500, data.subarray(500))).toBe(true);
  });

  it('a partial file older than the log segment (its lines were kept aside with a broken log) is left as it is', async () => {
    const { s, dir } = store();
    await s.put(digest, data.length, 0, data.subarray(0, 700));
    const again = new BlobStore(dir);
    expect(again.trimUnaccepted({ since: Date.now() + 60_000, accepted: new Map() })).toEqual([]);
    expect(again.partialSize(digest)).toBe(700);
  });
});
