import * as io from '@bytecodealliance/preview2-shim/io';
import type { GuestDir, Opened } from '../core/dir.js';
import { Errno, errnoOf, WasiError } from '../core/errno.js';
import type { HostFile } from '../core/file.js';
import type { FileType, Stat } from '../core/stat.js';
import type { NewTime } from '../core/times.js';

/**
 * wasi:filesystem for components over the same enforcement core as preview1 (guest/core: the path
 * walk, links, the quota ledger), synchronous in the guest's own thread. These classes replace
 * preview2-shim's filesystem in the imports object: the jco bindings check `instanceof` against
 * the classes they are given, and the shim's own go through its I/O worker (~150 us per call)
 * with no quota. Streams are objects of the shim's own stream classes (so the bindings accept
 * them) whose methods write through the core.
 */

type ErrorCode = string;
const CODES: Record<number, ErrorCode> = {
  [Errno.ACCES]: 'access',
  [Errno.AGAIN]: 'would-block',
  [Errno.BADF]: 'bad-descriptor',
  [Errno.BUSY]: 'busy',
  [Errno.DQUOT]: 'quota',
  [Errno.EXIST]: 'exist',
  [Errno.FBIG]: 'file-too-large',
  [Errno.ILSEQ]: 'illegal-byte-sequence',
  [Errno.INVAL]: 'invalid',
  [Errno.IO]: 'io',
  [Errno.ISDIR]: 'is-directory',
  [Errno.LOOP]: 'loop',
  [Errno.MLINK]: 'too-many-links',
  [Errno.NAMETOOLONG]: 'name-too-long',
  [Errno.NOENT]: 'no-entry',
  [Errno.NOSPC]: 'insufficient-space',
  [Errno.NOSYS]: 'unsupported',
  [Errno.NOTDIR]: 'not-directory',
  [Errno.NOTEMPTY]: 'not-empty',
  [Errno.NOTSUP]: 'unsupported',
  [Errno.PERM]: 'not-permitted',
  [Errno.NOTCAPABLE]: 'not-permitted',
  [Errno.ROFS]: 'read-only',
  [Errno.SPIPE]: 'invalid-seek',
  [Errno.XDEV]: 'cross-device',
};
const KNOWN = new Set(Object.values(CODES));
const codeOf = (err: unknown): ErrorCode => CODES[errnoOf(err)] ?? 'io';

/** Run a core call; a failure becomes the wasi:filesystem error code the bindings turn into err(...). */
function call<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    throw codeOf(err);
  }
}

const TYPES: Record<FileType, string> = {
  dir: 'directory',
  file: 'regular-file',
  symlink: 'symbolic-link',
  char: 'character-device',
  block: 'block-device',
  fifo: 'fifo',
  socket: 'socket',
  unknown: 'unknown',
};

type Datetime = { seconds: bigint; nanoseconds: number };
type NewTimestamp = { tag: 'no-change' } | { tag: 'now' } | { tag: 'timestamp'; val: Datetime };
type Flags = { read?: boolean; write?: boolean; mutateDirectory?: boolean; fileIntegritySync?: boolean; dataIntegritySync?: boolean; requestedWriteSync?: boolean };

const datetime = (ns: bigint): Datetime => ({ seconds: ns / 1_000_000_000n, nanoseconds: Number(ns % 1_000_000_000n) });
const newTime = (t: NewTimestamp): NewTime => (t.tag === 'no-change' ? { kind: 'keep' } : t.tag === 'now' ? { kind: 'now' } : { kind: 'set', ns: t.val.seconds * 1_000_000_000n + BigInt(t.val.nanoseconds) });
const descriptorStat = (st: Stat) => ({
  type: TYPES[st.type],
  linkCount: st.nlink,
  size: st.size,
  dataAccessTimestamp: datetime(st.atimeNs),
  dataModificationTimestamp: datetime(st.mtimeNs),
  statusChangeTimestamp: datetime(st.ctimeNs),
});

const dispose = (obj: object, f: () => void) => {
  const o = obj as Record<symbol, unknown>;
  o[Symbol.for('dispose')] = f;
  if (typeof Symbol.dispose === 'symbol') o[Symbol.dispose] = f;
};

const { InputStream, OutputStream } = io.streams as unknown as { InputStream: { prototype: object }; OutputStream: { prototype: object } };
const IoError = (io.error as unknown as { Error: new (payload: unknown) => object }).Error;
const streamFailure = (err: unknown) => ({ tag: 'last-operation-failed', val: new IoError(codeOf(err)) });

/** Streams are always ready: a pollable for them comes from a source that is always ready too. */
let readyPollable: () => unknown = () => {
  throw new Error('wasi:filesystem streams: no pollable source set');
};
export function setReadyPollable(f: () => unknown): void {
  readyPollable = f;
}

function inputStream(file: HostFile, offset: number): object {
  let pos = offset;
  const read = (len: bigint) => {
    const buf = new Uint8Array(Number(len > 1_048_576n ? 1_048_576n : len));
    let n: number;
    try {
      n = file.read([buf], pos);
    } catch (err) {
      throw streamFailure(err);
    }
    if (n === 0 && buf.length > 0) throw { tag: 'closed' };
    pos += n;
    return n === buf.length ? buf : buf.subarray(0, n);
  };
  const skip = (len: bigint) => BigInt(read(len).length);
  const s = Object.create(InputStream.prototype) as Record<string, unknown>;
  Object.assign(s, { read, blockingRead: read, skip, blockingSkip: skip, subscribe: () => readyPollable() });
  dispose(s, () => undefined);
  return s;
}

function outputStream(file: HostFile, offset: number | 'append'): object {
  let pos = offset === 'append' ? 0 : offset;
  const write = (b: Uint8Array) => {
    try {
      // An append stream writes at the file's true end each time, whatever other descriptors did.
      const at = offset === 'append' ? file.size : pos;
      let done = 0;
      while (done < b.length) {
        const n = file.write([done === 0 ? b : b.subarray(done)], at + done);
        if (n === 0) throw new WasiError(Errno.IO, 'no progress writing a file');
        done += n;
      }
      pos = at + done;
    } catch (err) {
      throw streamFailure(err);
    }
  };
  // In pieces: the length is the guest's, up to 2^64.
  const zeroes = (n: bigint) => {
    const piece = new Uint8Array(65536);
    for (let left = n; left > 0n; left -= 65536n) write(left >= 65536n ? piece : piece.subarray(0, Number(left)));
  };
  const s = Object.create(OutputStream.prototype) as Record<string, unknown>;
  Object.assign(s, {
    checkWrite: () => 1_048_576n,
    write,
    blockingWriteAndFlush: write,
    flush: () => undefined,
    blockingFlush: () => undefined,
    writeZeroes: zeroes,
    blockingWriteZeroesAndFlush: zeroes,
    subscribe: () => readyPollable(),
  });
  dispose(s, () => undefined);
  return s;
}

export class DirectoryEntryStream {
  #entries: { name: string; type: string }[];

  constructor(entries: { name: string; type: string }[]) {
    this.#entries = entries;
    dispose(this, () => undefined);
  }

  readDirectoryEntry(): { name: string; type: string } | undefined {
    return this.#entries.shift();
  }
}

export class Descriptor {
  #node: Opened;
  #flags: Flags;

  /**
   * Only lowcloud makes descriptors (the guest gets them from preopens and openAt). A preopen is
   * never closed by a drop: the preview1 adapter asks for the preopens again (each time handing
   * over and dropping the same objects), so it lives as long as the guest.
   */
  constructor(node: Opened, flags: Flags, preopen = false) {
    this.#node = node;
    this.#flags = flags;
    dispose(this, preopen ? () => undefined : () => node.close());
  }

  #file(): HostFile {
    if (this.#node.kind !== 'file') throw 'is-directory';
    return this.#node;
  }

  #dir(): GuestDir {
    if (this.#node.kind === 'file') throw 'not-directory';
    return this.#node;
  }

  #host() {
    const d = this.#dir();
    if (d.kind !== 'dir' || d.readonly) throw 'read-only';
    return d;
  }

  static #other(d: unknown): GuestDir {
    if (!(d instanceof Descriptor)) throw 'bad-descriptor';
    return d.#dir();
  }

  readViaStream(offset: bigint): object {
    const f = this.#file();
    if (!f.readable) throw 'bad-descriptor';
    return inputStream(f, Number(offset));
  }

  writeViaStream(offset: bigint): object {
    const f = this.#file();
    if (!f.writable) throw 'bad-descriptor';
    return outputStream(f, Number(offset));
  }

  appendViaStream(): object {
    const f = this.#file();
    if (!f.writable) throw 'bad-descriptor';
    return outputStream(f, 'append');
  }

  advise(): void {
    this.#file();
  }

  syncData(): void {
    const n = this.#node;
    call(() => (n.kind === 'file' ? n.sync(true) : n.kind === 'dir' ? n.sync() : undefined));
  }

  sync(): void {
    const n = this.#node;
    call(() => (n.kind === 'file' ? n.sync(false) : n.kind === 'dir' ? n.sync() : undefined));
  }

  getFlags(): Flags {
    return this.#flags;
  }

  getType(): string {
    const n = this.#node;
    return n.kind === 'file' ? TYPES[call(() => n.stat()).type] : 'directory';
  }

  setSize(size: bigint): void {
    const f = this.#file();
    call(() => f.setSize(Number(size)));
  }

  setTimes(atime: NewTimestamp, mtime: NewTimestamp): void {
    const n = this.#node;
    call(() => {
      if (n.kind === 'file') n.setTimes(newTime(atime), newTime(mtime));
      else if (n.kind === 'dir') n.setTimesSelf(newTime(atime), newTime(mtime));
      else throw 'read-only';
    });
  }

  read(length: bigint, offset: bigint): [Uint8Array, boolean] {
    const f = this.#file();
    const buf = new Uint8Array(Number(length > 1_048_576n ? 1_048_576n : length));
    const n = call(() => f.read([buf], Number(offset)));
    return [buf.subarray(0, n), n < buf.length || Number(offset) + n >= f.size];
  }

  write(buffer: Uint8Array, offset: bigint): bigint {
    const f = this.#file();
    return BigInt(call(() => f.write([buffer], Number(offset))));
  }

  readDirectory(): DirectoryEntryStream {
    const d = this.#dir();
    const entries = call(() => d.list())
      .filter((e) => e.name !== '.' && e.name !== '..')
      .map((e) => ({ name: e.name, type: TYPES[e.type] }));
    return new DirectoryEntryStream(entries);
  }

  createDirectoryAt(path: string): void {
    const d = this.#host();
    call(() => d.mkdir(path));
  }

  stat(): object {
    const n = this.#node;
    return descriptorStat(call(() => (n.kind === 'file' ? n.stat() : n.statSelf())));
  }

  statAt(pathFlags: { symlinkFollow?: boolean }, path: string): object {
    const d = this.#dir();
    return descriptorStat(call(() => (d.kind === 'dir' ? d.stat(path, pathFlags.symlinkFollow === true) : d.stat(path))));
  }

  setTimesAt(pathFlags: { symlinkFollow?: boolean }, path: string, atime: NewTimestamp, mtime: NewTimestamp): void {
    const d = this.#host();
    call(() => d.setTimes(path, pathFlags.symlinkFollow === true, newTime(atime), newTime(mtime)));
  }

  linkAt(oldPathFlags: { symlinkFollow?: boolean }, oldPath: string, newDescriptor: unknown, newPath: string): void {
    const d = this.#host();
    const to = Descriptor.#other(newDescriptor);
    call(() => d.link(oldPath, oldPathFlags.symlinkFollow === true, to, newPath));
  }

  openAt(pathFlags: { symlinkFollow?: boolean }, path: string, openFlags: { create?: boolean; directory?: boolean; exclusive?: boolean; truncate?: boolean }, flags: Flags): Descriptor {
    const d = this.#dir();
    const write = flags.write === true;
    const node = call(() =>
      d.open(path, {
        follow: pathFlags.symlinkFollow === true,
        create: openFlags.create === true,
        exclusive: openFlags.exclusive === true,
        truncate: openFlags.truncate === true,
        directory: openFlags.directory === true,
        read: flags.read === true,
        write,
        append: false,
        sync: flags.fileIntegritySync === true ? 'full' : flags.dataIntegritySync === true ? 'data' : 'none',
      }),
    );
    if (node.kind !== 'file' && write) {
      node.close();
      throw 'is-directory';
    }
    return new Descriptor(node, node.kind === 'file' ? { ...flags } : { ...flags, mutateDirectory: !node.readonly && this.#flags.mutateDirectory === true });
  }

  readlinkAt(path: string): string {
    const d = this.#dir();
    return call(() => d.readlink(path)).toString('utf8');
  }

  removeDirectoryAt(path: string): void {
    const d = this.#host();
    call(() => d.rmdir(path));
  }

  renameAt(oldPath: string, newDescriptor: unknown, newPath: string): void {
    const d = this.#host();
    const to = Descriptor.#other(newDescriptor);
    call(() => d.rename(oldPath, to, newPath));
  }

  symlinkAt(oldPath: string, newPath: string): void {
    const d = this.#host();
    call(() => d.symlink(oldPath, newPath));
  }

  unlinkFileAt(path: string): void {
    const d = this.#host();
    call(() => d.unlink(path));
  }

  isSameObject(other: unknown): boolean {
    if (!(other instanceof Descriptor)) return false;
    const a = this.#statOf();
    const b = other.#statOf();
    return a.dev === b.dev && a.ino === b.ino;
  }

  metadataHash(): { lower: bigint; upper: bigint } {
    return hash(this.#statOf());
  }

  metadataHashAt(pathFlags: { symlinkFollow?: boolean }, path: string): { lower: bigint; upper: bigint } {
    const d = this.#dir();
    return hash(call(() => (d.kind === 'dir' ? d.stat(path, pathFlags.symlinkFollow === true) : d.stat(path))));
  }

  #statOf(): Stat {
    const n = this.#node;
    return call(() => (n.kind === 'file' ? n.stat() : n.statSelf()));
  }
}

const hash = (st: Stat) => ({ lower: BigInt.asUintN(64, st.ino ^ (st.mtimeNs << 1n)), upper: BigInt.asUintN(64, st.dev ^ st.size) });

/** wasi:filesystem/types and wasi:filesystem/preopens for one component instance. */
export function filesystemImports(preopens: [string, GuestDir][]): { types: object; preopens: object } {
  const dirs: [Descriptor, string][] = preopens.map(([guest, dir]) => [new Descriptor(dir, { read: true, mutateDirectory: !dir.readonly }, true), guest]);
  return {
    types: {
      Descriptor,
      DirectoryEntryStream,
      filesystemErrorCode: (err: unknown) => {
        const p = (err as { payload?: unknown } | null)?.payload;
        return typeof p === 'string' && KNOWN.has(p) ? p : undefined;
      },
    },
    preopens: { getDirectories: () => dirs },
  };
}
