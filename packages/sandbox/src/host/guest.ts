import fs from 'node:fs';
import path from 'node:path';
import type { NetworkAccess } from '@lowcloud/api';
import type { GuestBoot } from '../common/protocol.js';
import { usageOf } from '../common/usage.js';
import { GuestDirError } from '../errors.js';
import type { EnforcementReport, GuestExit, GuestOptions, OutputTarget } from '../types.js';
import type { BinaryKind } from '../wasm/module.js';
import { readExitRecordFile } from './exit-record.js';
import { GPU_SUBMIT_SECONDS, type GrantLayers } from './grants/index.js';

/** What a re-attaching host needs of one guest (in its guest host's guest.json). */
export interface GuestRecord {
  id: string;
  report: EnforcementReport;
  dirs: { host: string; readonly: boolean }[];
  exitRecord: string | null;
  /** `GuestOptions.tag` (absent in records from before it, and for guests started without one). */
  tag?: string;
  /** What must stay the same for its host to start it again in place (`restartKey`, spawn.ts); absent where it cannot. */
  restartKey?: string;
}

/**
 * One guest: an instance running in a guest host (guest-host.ts), with its boot options, its
 * enforcement report, its directories, its logs and its exit record. The guest host is the process
 * around it; a guest host could carry several.
 */
export class Guest {
  private constructor(
    readonly id: string,
    readonly report: EnforcementReport,
    readonly dirs: { host: string; readonly: boolean }[],
    readonly exitRecord: string | null,
    /** Only for a guest this host started (a re-attached one has no boot options here). */
    readonly boot: GuestBoot | null,
    /** Files the host made for the guest host to write (exit record, logs). */
    readonly files: string[],
    readonly tag: string | null,
    readonly restartKey: string | null = null,
  ) {}

  /**
   * A new guest from its options: its files made (owned by `uid` where it is not ours), its boot
   * options assembled. Throws, having made nothing the guest can use, on a data directory that is
   * not a directory.
   */
  static create(
    opts: GuestOptions,
    admitted: { modulePath: string; kind: BinaryKind },
    host: { id: string; uid: number | null; runDir: string | null; workerHeapMb: number | null; network: NetworkAccess; layers: readonly GrantLayers[]; names: readonly string[]; restartKey?: string; report?: EnforcementReport },
  ): Guest {
    const dirs = opts.dirs.map((d) => ({ host: path.resolve(d.host), guest: d.guest, readonly: d.readonly === true }));
    // The agent's data directories belong to the guest's uid (never `lowcloud run`'s: those are the user's).
    if (host.uid !== null) for (const d of dirs.filter((x) => !x.readonly)) ownDirectory(d.host, host.uid);
    // Log files are written by the host (host/output-pump.ts): the guest host writes to its fds 1
    // and 2. The exit record comes down a pipe to the launcher, which writes it here once the guest
    // host has ended (host/launcher.ts). Nothing of the host's disk is writable in the wall for them.
    const toFd = (t: OutputTarget): OutputTarget => (typeof t === 'object' ? 'pipe' : t);
    const stdout = toFd(opts.stdout ?? 'inherit');
    const stderr = toFd(opts.stderr ?? 'inherit');
    const files: string[] = [];
    const exitRecord = host.runDir === null ? null : path.join(host.runDir, 'exit.json');
    // A previous run's record must not be read as this one's.
    if (exitRecord !== null) fs.rmSync(exitRecord, { force: true });
    const boot: GuestBoot = {
      id: host.id,
      modulePath: admitted.modulePath,
      kind: admitted.kind,
      argv: [opts.argv0 ?? path.basename(opts.wasm), ...opts.args],
      env: opts.env,
      dirs,
      config: opts.config.map((c) => ('host' in c ? { guest: c.guest, host: path.resolve(c.host) } : { guest: c.guest, content: Buffer.from(c.content).toString('base64') })),
      disk: opts.grants.disk ?? null,
      network: host.network,
      workerHeapMb: host.workerHeapMb,
      ...(opts.grants.gpu === undefined ? {} : { gpu: { memoryBytes: opts.grants.gpu.memory, submitMs: Math.round((opts.grants.gpu.submitSeconds ?? GPU_SUBMIT_SECONDS) * 1000) } }),
      stdin: opts.stdin === 'inherit',
      stdout,
      stderr,
      exitRecord: null,
      ...(exitRecord === null ? {} : { exitFd: true }),
    };
    const report = host.report ?? (Object.fromEntries(host.names.map((n, i) => [n, host.layers[i]?.report ?? []])) as unknown as EnforcementReport);
    return new Guest(host.id, report, dirs, exitRecord, boot, files, opts.tag ?? null, host.restartKey ?? null);
  }

  /** A guest of a guest host this host re-attached to. */
  static restore(r: GuestRecord): Guest {
    r.report.isolation ??= []; // recorded by a version from before the wall
    return new Guest(r.id, r.report, r.dirs, r.exitRecord, null, [], r.tag ?? null, typeof r.restartKey === 'string' ? r.restartKey : null);
  }

  get record(): GuestRecord {
    return { id: this.id, report: this.report, dirs: this.dirs.map((d) => ({ host: d.host, readonly: d.readonly })), exitRecord: this.exitRecord, ...(this.tag === null ? {} : { tag: this.tag }), ...(this.restartKey === null ? {} : { restartKey: this.restartKey }) };
  }

  /** What the wall binds read-only for this guest: its binary, its config files, its read-only directories. */
  get readable(): string[] {
    return this.boot === null ? [] : [this.boot.modulePath, ...this.boot.config.flatMap((c) => ('host' in c ? [c.host] : [])), ...this.dirs.filter((d) => d.readonly).map((d) => d.host)];
  }

  /** What the wall binds writable: the files made for it and its writable directories. */
  get writable(): string[] {
    return [...this.files, ...this.dirs.filter((d) => !d.readonly).map((d) => d.host)];
  }

  /** How the guest said it ended, in its exit record (hostile input: read bounded, parsed closed). */
  recordedExit(): GuestExit | null {
    return this.exitRecord === null ? null : readExitRecordFile(this.exitRecord);
  }

  /** Bytes the guest holds in its writable directories (the disk grant's rule, common/usage.ts). */
  diskBytes(): number {
    return this.dirs.filter((d) => !d.readonly).reduce((s, d) => s + usageOf(d.host), 0);
  }
}

/** Give a data directory to the guest's uid, 0700, never following a link (its parent is the host's). */
function ownDirectory(dir: string, uid: number): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory()) throw new GuestDirError(dir, 'not a directory');
  fs.lchownSync(dir, uid, uid);
  fs.chmodSync(dir, 0o700);
}
