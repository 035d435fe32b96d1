import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ErrorCode, LowcloudError } from '@lowcloud/api';
import { fsyncDir } from './durable.js';

/**
 * Content-addressed blobs (binaries and config files) by sha256. Uploads arrive in chunks into a
 * partial file, so an interrupted upload resumes at its offset; a blob becomes visible only after
 * its bytes hash to its name (then fsync + atomic rename).
 */
export class BlobStore {
  readonly dir: string;
  private readonly partialDir: string;

  constructor(stateDir: string) {
    this.dir = path.join(stateDir, 'blobs');
    this.partialDir = path.join(this.dir, 'partial');
    fs.mkdirSync(this.partialDir, { recursive: true, mode: 0o700 });
  }

  path(digest: string): string {
    return path.join(this.dir, digest);
  }

  has(digest: string): boolean {
    return fs.existsSync(this.path(digest));
  }

  partialSize(digest: string): number | undefined {
    try {
      return fs.statSync(path.join(this.partialDir, digest)).size;
    } catch {
      return undefined;
    }
  }

  /** Append one chunk at `offset`; on the last chunk verify and publish. Returns true when complete. */
  put(digest: string, size: number, offset: number, data: Buffer): boolean {
    if (this.has(digest)) return true;
    const partial = path.join(this.partialDir, digest);
    const have = this.partialSize(digest) ?? 0;
    if (offset !== have) {
      throw new LowcloudError(ErrorCode.INVALID_INPUT, `put-blob ${digest.slice(0, 12)}: offset ${offset}, but the agent has ${have} bytes; resume from ${have}`, {
        details: { expectedOffset: have },
      });
    }
    if (offset + data.length > size) throw new LowcloudError(ErrorCode.INVALID_INPUT, `put-blob ${digest.slice(0, 12)}: more bytes than the declared size ${size}`);
    const fd = fs.openSync(partial, 'a');
    try {
      fs.writeSync(fd, data);
      if (offset + data.length === size) fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (offset + data.length < size) return false;
    const actual = createHash('sha256').update(fs.readFileSync(partial)).digest('hex');
    if (actual !== digest) {
      fs.rmSync(partial, { force: true });
      throw new LowcloudError(ErrorCode.DIGEST_MISMATCH, `put-blob: the bytes hash to ${actual}, not ${digest}; nothing was stored`, { details: { expected: digest, actual } });
    }
    fs.renameSync(partial, this.path(digest));
    fsyncDir(this.dir);
    return true;
  }
}
