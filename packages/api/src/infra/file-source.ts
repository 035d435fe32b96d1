import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { lstat, open, readlink, realpath } from 'node:fs/promises';
import path from 'node:path';
import { ErrorCode, LowcloudError } from '../errors.js';
import { resolveRepoPath, type Entry } from './repo-path.js';

/** A file's bytes, or why there are none: missing, or refused (outside the repository, absolute, not a file). */
export type FileRead = { kind: 'file'; bytes: Uint8Array } | { kind: 'missing'; reason: string } | { kind: 'refused'; reason: string };

/**
 * Where an infra file and the files it references are read from: the working tree, or a git
 * revision (the CI case: `plan --base main`). Paths are relative to the infra file's directory and
 * must stay inside the repository after symlinks are followed; both sources apply that rule
 * through the same walk (`resolveRepoPath`), so they agree about the same commit.
 */
export interface FileSource {
  /** For messages: `working tree` or `git main`. */
  readonly label: string;
  read(relPath: string): Promise<FileRead>;
  close?(): void;
}

export class WorkingTreeSource implements FileSource {
  readonly label = 'working tree';
  private constructor(
    /** The repository's top directory (real path); outside git, the infra file's directory. */
    private readonly root: string,
    /** The infra file's directory relative to `root`, `/`-separated. */
    private readonly dir: string,
  ) {}

  static async open(baseDir: string): Promise<WorkingTreeSource> {
    // A directory that does not exist: every read says missing.
    const real = await realpath(baseDir).catch(() => path.resolve(baseDir));
    const top = await git(real, ['rev-parse', '--show-toplevel']).then((t) => realpath(t), () => real);
    return new WorkingTreeSource(top, path.relative(top, real).split(path.sep).join('/'));
  }

  async read(relPath: string): Promise<FileRead> {
    const r = await resolveRepoPath(this.dir, relPath, (p) => lookupFs(path.join(this.root, p)));
    if (r.kind !== 'file') return r;
    let fh;
    try {
      // O_NOFOLLOW: the file checked above cannot be swapped for a symlink before it is read.
      fh = await open(path.join(this.root, r.path), constants.O_RDONLY | constants.O_NOFOLLOW);
      return { kind: 'file', bytes: await fh.readFile() };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return { kind: 'missing', reason: `${relPath} does not exist` };
      if (code === 'ELOOP') return { kind: 'refused', reason: `${relPath} became a symlink while it was read` };
      throw err;
    } finally {
      await fh?.close();
    }
  }
}

async function lookupFs(file: string): Promise<Entry> {
  let st;
  try {
    st = await lstat(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return { kind: 'missing' };
    throw err;
  }
  if (st.isSymbolicLink()) return { kind: 'symlink', target: await readlink(file) };
  if (st.isDirectory()) return { kind: 'dir' };
  if (st.isFile()) return { kind: 'file' };
  return { kind: 'other', what: 'a device, socket or FIFO' };
}

/**
 * Reads files at a git revision through one `git cat-file --batch` process: one process for the
 * whole plan instead of one `git show` per file (10,000 processes reference many files). Paths are
 * walked through the revision's tree objects, so a symlink is seen as a symlink (mode 120000) and
 * followed by the same rule as in the working tree, never read as a file holding its target.
 */
export class GitRevisionSource implements FileSource {
  readonly label: string;
  private readonly proc;
  private buffer = Buffer.alloc(0);
  private waiting: { resolve: (v: { type: string; body: Buffer } | null) => void; reject: (e: Error) => void }[] = [];
  private queue: Promise<unknown> = Promise.resolve();
  /** Directory (relative to the root) -> its entries: name -> mode and object id. */
  private readonly trees = new Map<string, Promise<Map<string, { mode: string; oid: string }> | null>>();

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
    const real = await realpath(baseDir).catch(() => path.resolve(baseDir));
    const root = await git(real, ['rev-parse', '--show-toplevel']).catch((err: Error) => {
      throw new LowcloudError(ErrorCode.GIT_REVISION_NOT_FOUND, `--base ${revision}: ${path.resolve(baseDir)} is not inside a git repository`, { cause: err });
    });
    const commit = await git(real, ['rev-parse', '--verify', '--quiet', `${revision}^{commit}`]).catch(() => {
      throw new LowcloudError(
        ErrorCode.GIT_REVISION_NOT_FOUND,
        `--base ${revision}: no such revision in ${root}`,
        { details: { revision } },
      );
    });
    const prefix = path.relative(await realpath(root), real).split(path.sep).join('/');
    return new GitRevisionSource(root, prefix, revision, commit);
  }

  async read(relPath: string): Promise<FileRead> {
    const r = await resolveRepoPath(this.prefix, relPath, (p) => this.lookup(p));
    if (r.kind !== 'file') return r;
    const entry = await this.entry(r.path);
    const obj = entry === null ? null : await this.object(entry.oid);
    if (obj === null || obj.type !== 'blob') return { kind: 'missing', reason: `${relPath} does not exist` };
    return { kind: 'file', bytes: Uint8Array.from(obj.body) };
  }

  private async entry(p: string): Promise<{ mode: string; oid: string } | null> {
    const slash = p.lastIndexOf('/');
    const tree = await this.tree(slash < 0 ? '' : p.slice(0, slash));
    return tree?.get(slash < 0 ? p : p.slice(slash + 1)) ?? null;
  }

  private async lookup(p: string): Promise<Entry> {
    const e = await this.entry(p);
    if (e === null) return { kind: 'missing' };
    if (e.mode === '40000') return { kind: 'dir' };
    if (e.mode === '120000') {
      const link = await this.object(e.oid);
      return { kind: 'symlink', target: link?.body.toString('utf8') ?? '' };
    }
    if (e.mode === '100644' || e.mode === '100755') return { kind: 'file' };
    return { kind: 'other', what: e.mode === '160000' ? 'a submodule' : `a git entry of mode ${e.mode}` };
  }

  /** The entries of a directory of the revision (its binary tree object: `mode name\0<id bytes>`...). */
  private tree(dir: string): Promise<Map<string, { mode: string; oid: string }> | null> {
    let t = this.trees.get(dir);
    if (t === undefined) {
      t = this.object(dir === '' ? `${this.commit}^{tree}` : `${this.commit}:${dir}`).then((obj) => {
        if (obj === null || obj.type !== 'tree') return null;
        const idBytes = this.commit.length / 2;
        const entries = new Map<string, { mode: string; oid: string }>();
        let i = 0;
        while (i < obj.body.length) {
          const sp = obj.body.indexOf(0x20, i);
          const nul = obj.body.indexOf(0, sp);
          if (sp < 0 || nul < 0) break;
          entries.set(obj.body.subarray(sp + 1, nul).toString('utf8'), { mode: obj.body.subarray(i, sp).toString(), oid: obj.body.subarray(nul + 1, nul + 1 + idBytes).toString('hex') });
          i = nul + 1 + idBytes;
        }
        return entries;
      });
      this.trees.set(dir, t);
    }
    return t;
  }

  private object(spec: string): Promise<{ type: string; body: Buffer } | null> {
    if (spec.includes('\n')) return Promise.resolve(null);
    const run = this.queue.then(
      () =>
        new Promise<{ type: string; body: Buffer } | null>((resolve, reject) => {
          this.waiting.push({ resolve, reject });
          this.proc.stdin.write(`${spec}\n`);
        }),
    );
    // The caller gets the failure through `run`; the queue only keeps the next read from waiting on it.
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
      if (header.endsWith(' missing') || header.endsWith(' ambiguous')) {
        this.buffer = this.buffer.subarray(nl + 1);
        this.waiting.shift();
        w.resolve(null);
        continue;
      }
      const m = /^[0-9a-f]+ (\w+) (\d+)$/.exec(header);
      if (m === null) {
        this.failAll(new LowcloudError(ErrorCode.INTERNAL, `unexpected git cat-file output: ${header}`));
        return;
      }
      const size = Number(m[2]);
      if (this.buffer.length < nl + 1 + size + 1) return;
      const body = Buffer.from(this.buffer.subarray(nl + 1, nl + 1 + size));
      this.buffer = this.buffer.subarray(nl + 1 + size + 1);
      this.waiting.shift();
      w.resolve({ type: m[1] as string, body });
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
    p.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new LowcloudError(ErrorCode.INTERNAL, err.trim() || `git ${args.join(' ')} exited ${code}`, { details: { command: ['git', ...args] } }))));
  });
}
