import { createHash, type Hash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDir, truncateBack, writeAll } from '@lowcloud/sandbox';
import { BlobChunkError, DigestMismatchError } from '../errors.js';
import { StateDisk } from './state-disk.js';

/** Default cap on one blob's declared size (`lowcloud agent --max-blob-size`). */
export const DEFAULT_MAX_BLOB_BYTES = 1024 ** 3;
const DIGEST = /^[0-9a-f]{64}$/;
const HASH_CHUNK = 1024 * 1024;
/** Uploads whose running hash is kept at once; past it the oldest falls back to hashing its file. */
const MAX_RUNNING_HASHES = 256;

/**
 * Content-addressed blobs (binaries and config files) by sha256. Uploads arrive in chunks into a
 * partial file, so an interrupted upload resumes at its offset; a blob becomes visible only after
 * its bytes hash to its name (then fsync + atomic rename). A chunk is written whole or not at all:
 * a chunk that does not fit (a full disk) is cut off again, so the partial file ends at a chunk the
 * agent accepted, and the upload resumes there. Chunks are not fsynced one by one (that made a
 * 100 MB upload wait on 200 disk flushes); the whole blob is, once, before it is published. A crash
 * loses at most unflushed chunks: the partial file is then shorter (the upload resumes at its size,
 * never past the audit log's lines, see trimUnaccepted), and anything else its bytes became fails
 * the digest check, so no wrong blob is ever published.
 *
 * Which blobs and partial files exist is kept in memory (read from the directory once), so a
 * `blob-status` of thousands of digests costs no syscall per unknown digest; a blob the index
 * holds is checked on disk once per question, so one removed by hand is reported missing (and
 * uploaded again) rather than handed to a guest host.
 */
export class BlobStore {
  readonly dir: string;
  private readonly partialDir: string;
  private readonly present = new Set<string>();
  private readonly partials = new Map<string, number>();
  /**
   * The sha256 of each upload this process has seen from offset 0, fed each chunk as it is stored:
   * the last chunk then needs no second pass over the file (100 MB: 0.2-0.4 s of CPU and a re-read,
   * at the end of the upload, when the caller waits). Any upload that is not whole here (resumed
   * after a restart, a chunk taken back, one dropped past MAX_RUNNING_HASHES) is hashed from its file.
   */
  private readonly running = new Map<string, { hash: Hash; at: number }>();

  private readonly disk: StateDisk;

  constructor(stateDir: string, readonly maxBytes = DEFAULT_MAX_BLOB_BYTES, disk?: StateDisk) {
    this.disk = disk ?? new StateDisk(stateDir);
    this.dir = path.join(stateDir, 'blobs');
    this.partialDir = path.join(this.dir, 'partial');
    fs.mkdirSync(this.partialDir, { recursive: true, mode: 0o700 });
    for (const e of fs.readdirSync(this.dir, { withFileTypes: true })) if (e.isFile() && DIGEST.test(e.name)) this.present.add(e.name);
    for (const e of fs.readdirSync(this.partialDir, { withFileTypes: true })) {
      if (e.isFile() && DIGEST.test(e.name)) this.partials.set(e.name, fs.statSync(path.join(this.partialDir, e.name)).size);
    }
  }

  /**
   * At start: a partial upload is cut back to the chunks the audit log accepted. The agent stores
   * a chunk, then appends its line, then answers; one that died between the two kept a chunk its
   * client was never told of: it goes, and the client resumes before it (its chunk then gets its
   * line). Only partial files written since the log's segment began are judged (an older segment
   * was kept aside). Returns what it cut, for the log.
   */
  trimUnaccepted(uploads: { since: number; accepted: ReadonlyMap<string, number> }): string[] {
    const notes: string[] = [];
    for (const [digest, size] of this.partials) {
      const file = path.join(this.partialDir, digest);
      const accepted = uploads.accepted.get(digest);
      if (accepted === undefined && fs.statSync(file).mtimeMs < uploads.since) continue;
      const keep = accepted ?? 0;
      if (size <= keep) continue;
      if (keep === 0) {
        fs.rmSync(file, { force: true });
        this.partials.delete(digest);
      } else {
        const fd = fs.openSync(file, 'r+');
        try {
          truncateBack(fd, keep);
        } finally {
          fs.closeSync(fd);
        }
        this.partials.set(digest, keep);
      }
      notes.push(`partial blob ${digest.slice(0, 12)} cut from ${size} to ${keep} bytes: the agent stopped before the audit line of its last chunk (never answered; the upload resumes at ${keep})`);
    }
    return notes;
  }

  path(digest: string): string {
    return path.join(this.dir, digest);
  }

  has(digest: string): boolean {
    if (!this.present.has(digest)) return false;
    if (fs.existsSync(this.path(digest))) return true;
    this.present.delete(digest);
    return false;
  }

  partialSize(digest: string): number | undefined {
    return this.partials.get(digest);
  }

  /**
   * Append one chunk at `offset`; on the last chunk verify and publish. Returns true when complete.
   * Calls for one store must not overlap (the agent serializes mutating calls). The last chunk's
   * hash is read back asynchronously, so a large blob does not stall the agent's event loop.
   */
  async put(digest: string, size: number, offset: number, data: Buffer): Promise<boolean> {
    if (this.has(digest)) return true;
    if (size > this.maxBytes) {
      throw new BlobChunkError(`put-blob ${digest.slice(0, 12)}: ${size} bytes is more than this agent takes in one blob (${this.maxBytes}); raise it with lowcloud agent --max-blob-size`, { size, maxBytes: this.maxBytes });
    }
    const partial = path.join(this.partialDir, digest);
    const have = this.partials.get(digest) ?? 0;
    if (offset !== have) {
      throw new BlobChunkError(`put-blob ${digest.slice(0, 12)}: offset ${offset}, but the agent has ${have} bytes; resume from ${have}`, { expectedOffset: have });
    }
    if (offset + data.length > size) throw new BlobChunkError(`put-blob ${digest.slice(0, 12)}: more bytes than the declared size ${size}`);
    // 0644 inside 0700 directories: a guest host, as its own uid, reads its config blobs through
    // a bind mount of just that file; nothing else can reach them.
    const fd = fs.openSync(partial, 'a', 0o644);
    let now: number;
    try {
      fs.fchmodSync(fd, 0o644); // whatever the agent's umask
      this.disk.guard(`storing blob ${digest.slice(0, 12)}`, data.length, () => {
        try {
          writeAll(fd, data, offset);
          if (offset + data.length === size) fs.fsyncSync(fd); // the last chunk: the whole blob, before it is hashed
        } catch (err) {
          truncateBack(fd, offset); // a chunk is stored whole or not at all
          throw err;
        }
      });
    } finally {
      now = fs.fstatSync(fd).size;
      fs.closeSync(fd);
      // A first chunk refused leaves no partial file behind either.
      if (now === 0) {
        fs.rmSync(partial, { force: true });
        this.partials.delete(digest);
      } else this.partials.set(digest, now);
    }
    this.feed(digest, offset, data);
    if (now < size) return false;
    const run = this.running.get(digest);
    this.running.delete(digest);
    const actual = run !== undefined && run.at === size ? run.hash.digest('hex') : await hashFile(partial);
    this.partials.delete(digest);
    if (actual !== digest) {
      fs.rmSync(partial, { force: true });
      throw new DigestMismatchError(digest, actual);
    }
    fs.renameSync(partial, this.path(digest));
    fsyncDir(this.dir);
    this.present.add(digest);
    return true;
  }

  /** A chunk stored at `offset`: into the upload's running hash, if it has one that ends there. */
  private feed(digest: string, offset: number, data: Buffer): void {
    let run = this.running.get(digest);
    if (offset === 0) {
      this.running.delete(digest);
      if (this.running.size >= MAX_RUNNING_HASHES) this.running.delete(this.running.keys().next().value as string);
      run = { hash: createHash('sha256'), at: 0 };
      this.running.set(digest, run);
    }
    if (run === undefined) return;
    if (run.at !== offset) {
      this.running.delete(digest);
      return;
    }
    run.hash.update(data);
    run.at += data.length;
  }

  /**
   * Take back the chunk just stored at `offset` (its call is refused after all: its audit line could
   * not be written). A blob it completed becomes partial again. Needs no free space.
   */
  undo(digest: string, offset: number): void {
    this.running.delete(digest);
    const partial = path.join(this.partialDir, digest);
    if (this.present.delete(digest)) {
      fs.renameSync(this.path(digest), partial);
      fsyncDir(this.dir);
    }
    const fd = fs.openSync(partial, 'r+');
    try {
      truncateBack(fd, offset);
    } finally {
      fs.closeSync(fd);
    }
    this.partials.set(digest, offset);
  }
}

async function hashFile(file: string): Promise<string> {
  const h = createHash('sha256');
  const fh = await fs.promises.open(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(HASH_CHUNK);
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, HASH_CHUNK, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
    }
  } finally {
    await fh.close();
  }
  return h.digest('hex');
}
