import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as filesystem from '@bytecodealliance/preview2-shim/filesystem';

/**
 * Read-only config files for components. Each guest directory that holds config files becomes a
 * private host directory with copies of exactly the granted files, preopened through the shim.
 * Every descriptor reached from it is read-only: opening for write, creating, linking, renaming,
 * removing and resizing are refused; `..`, absolute paths and symlinks are refused before the shim
 * sees the path. Copies, not links, so nothing the guest does can reach the originals.
 */
type Proto = Record<string, (...a: unknown[]) => unknown>;
const readonly = new WeakSet<object>();
let patched = false;

function patchDescriptor(): void {
  if (patched) return;
  patched = true;
  const { Descriptor } = filesystem.types as unknown as { Descriptor: { prototype: Proto } };
  const P = Descriptor.prototype;
  const deny = (name: string, code: string) => {
    const orig = P[name] as (...a: unknown[]) => unknown;
    P[name] = function (this: object, ...args: unknown[]) {
      if (readonly.has(this)) throw code;
      return orig.apply(this, args);
    };
  };
  for (const m of ['writeViaStream', 'appendViaStream', 'setSize', 'setTimes', 'write', 'createDirectoryAt', 'setTimesAt', 'linkAt', 'removeDirectoryAt', 'renameAt', 'symlinkAt', 'unlinkFileAt']) {
    deny(m, 'read-only');
  }
  const checkPath = (p: unknown) => {
    const s = String(p);
    if (s.startsWith('/') || s.split('/').includes('..')) throw 'not-permitted';
  };
  for (const m of ['statAt', 'readlinkAt', 'metadataHashAt']) {
    const orig = P[m] as (...a: unknown[]) => unknown;
    P[m] = function (this: object, ...args: unknown[]) {
      if (readonly.has(this)) checkPath(m === 'readlinkAt' ? args[0] : args[1]);
      return orig.apply(this, args);
    };
  }
  const openAt = P.openAt as (...a: unknown[]) => unknown;
  P.openAt = function (this: object, ...args: unknown[]) {
    const [pathFlags, p] = args;
    const openFlags = args[2] as { create?: boolean; truncate?: boolean } | undefined;
    const descriptorFlags = args[3] as { write?: boolean; mutateDirectory?: boolean } | undefined;
    if (!readonly.has(this)) return openAt.call(this, pathFlags, p, openFlags, descriptorFlags);
    checkPath(p);
    if (openFlags?.create === true || openFlags?.truncate === true || descriptorFlags?.write === true || descriptorFlags?.mutateDirectory === true) throw 'read-only';
    // Never follow a symlink (there are none in these directories; this keeps it that way).
    const d = openAt.call(this, { ...(pathFlags as object), symlinkFollow: false }, p, openFlags, descriptorFlags) as object;
    readonly.add(d);
    return d;
  };
}

/** Preopens for the config files: [descriptor, guest directory] pairs, and a cleanup function. */
export function configPreopens(config: { guest: string; host: string }[]): { entries: [unknown, string][]; cleanup(): void } {
  if (config.length === 0) return { entries: [], cleanup: () => undefined };
  patchDescriptor();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-config-'));
  const byDir = new Map<string, { guest: string; host: string }[]>();
  for (const c of config) byDir.set(path.posix.dirname(c.guest), [...(byDir.get(path.posix.dirname(c.guest)) ?? []), c]);
  const entries: [unknown, string][] = [];
  let i = 0;
  for (const [dir, files] of byDir) {
    const host = path.join(root, String(i++));
    fs.mkdirSync(host);
    for (const f of files) fs.copyFileSync(f.host, path.join(host, path.posix.basename(f.guest)));
    const d = (filesystem as unknown as { _createPreopenDescriptor(p: string): object })._createPreopenDescriptor(host);
    readonly.add(d);
    entries.push([d, dir]);
  }
  return { entries, cleanup: () => fs.rmSync(root, { recursive: true, force: true }) };
}
