import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, LowcloudError } from '../errors.js';

/**
 * Where an infra file and the files it references are read from: the working tree, or a git
 * revision (the CI case: `plan --base main`). Paths are relative to the infra file's directory.
 */
export interface FileSource {
  /** For messages: `working tree` or `git main`. */
  readonly label: string;
  /** The bytes of a file, or null when it does not exist. */
  read(relPath: string): Promise<Uint8Array | null>;
  close?(): void;
}

export class WorkingTreeSource implements FileSource {
  readonly label = 'working tree';
  constructor(private readonly baseDir: string) {}

  async read(relPath: string): Promise<Uint8Array | null> {
    try {
      return await readFile(path.resolve(this.baseDir, relPath));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'EISDIR') return null;
      throw err;
    }
  }
}

/**
 * Reads files at a git revision through one `git cat-file --batch` process: one process for the
 * whole plan instead of one `git show` per file (10,000 processes reference many files).
 */
export class GitRevisionSource implements FileSource {
  readonly label: string;
  private readonly proc;
  private buffer = Buffer.alloc(0);
  private waiting: { resolve: (v: Uint8Array | null) => void; reject: (e: Error) => void }[] = [];
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly repoRoot: string,
    /** The infra file's directory, relative to the repository root, in git's `/` form. */
    private readonly prefix: string,
    readonly revision: string,
    readonly commit: string,
  ) {
    this.label = `git ${revision}`;
    this.proc = spawn('git', ['cat-file', '--batch'], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'ignore'] });
    this.proc.stdout.on('data', (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.drain();
    });
    this.proc.on('error', (err) => this.failAll(err));
  }

  /** Opens `revision` of the repository holding `baseDir`; a missing revision is a clear error. */
  static async open(baseDir: string, revision: string): Promise<GitRevisionSource> {
    const root = await git(baseDir, ['rev-parse', '--show-toplevel']).catch((err: Error) => {
      throw new LowcloudError(ErrorCode.GIT_REVISION_NOT_FOUND, `--base ${revision}: ${path.resolve(baseDir)} is not inside a git repository`, { cause: err });
    });
    const commit = await git(baseDir, ['rev-parse', '--verify', '--quiet', `${revision}^{commit}`]).catch(() => {
      throw new LowcloudError(
        ErrorCode.GIT_REVISION_NOT_FOUND,
        `--base ${revision}: no such revision in ${root}`,
        { details: { revision } },
      );
    });
    const prefix = path.relative(root, path.resolve(baseDir)).split(path.sep).join('/');
    return new GitRevisionSource(root, prefix, revision, commit);
  }

  read(relPath: string): Promise<Uint8Array | null> {
    const p = path.posix.normalize(path.posix.join(this.prefix, relPath.split(path.sep).join('/')));
    if (p.startsWith('../') || p === '..') return Promise.resolve(null);
    const run = this.queue.then(
      () =>
        new Promise<Uint8Array | null>((resolve, reject) => {
          this.waiting.push({ resolve, reject });
          this.proc.stdin.write(`${this.commit}:${p}\n`);
        }),
    );
    this.queue = run.catch(() => undefined);
    return run;
  }

  close(): void {
    this.proc.stdin.end();
  }

  private drain(): void {
    for (;;) {
      const w = this.waiting[0];
      if (w === undefined) return;
      const nl = this.buffer.indexOf(10);
      if (nl < 0) return;
      const header = this.buffer.subarray(0, nl).toString();
      if (header.endsWith(' missing')) {
        this.buffer = this.buffer.subarray(nl + 1);
        this.waiting.shift();
        w.resolve(null);
        continue;
      }
      const m = /^[0-9a-f]+ (\w+) (\d+)$/.exec(header);
      if (m === null) {
        this.failAll(new Error(`unexpected git cat-file output: ${header}`));
        return;
      }
      const size = Number(m[2]);
      if (this.buffer.length < nl + 1 + size + 1) return;
      const body = this.buffer.subarray(nl + 1, nl + 1 + size);
      this.buffer = this.buffer.subarray(nl + 1 + size + 1);
      this.waiting.shift();
      w.resolve(m[1] === 'blob' ? Uint8Array.from(body) : null);
    }
  }

  private failAll(err: Error): void {
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  get root(): string {
    return this.repoRoot;
  }
}

function git(cwd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn('git', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.on('data', (d: Buffer) => (err += d.toString()));
    p.on('error', reject);
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(err.trim() || `git ${args.join(' ')} exited ${code}`))));
  });
}
