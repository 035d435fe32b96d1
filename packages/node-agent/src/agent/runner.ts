import fs from 'node:fs';
import path from 'node:path';
import { isolationOf, type ProcessSpec } from '@lowcloud/api';
import { attachGuest, prewarmJspiNode, readExitRecord, spawnGuest, startWarmHost, stopSpareHosts, stopWarmHosts, warmHostReady, warmPoolRefusal, warmRefusal, warmSharedHost, type GuestExit, type GuestHandle, type GuestOptions, type NetnsMode } from '@lowcloud/sandbox';
import type { OpeningKey } from '@lowcloud/api/secrets';
import type { BlobStore } from './blob-store.js';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs.js';
import { openSecrets } from './secrets.js';
import type { StateDisk } from './state-disk.js';
import type { GuestRunner } from './supervisor.js';
import { UidTable } from './uids.js';

/** The uid table's key for the one uid of every `shared` process (not a process name: names have no `#`). */
const SHARED_UID_KEY = '#shared';

/** The uid table's keys of the warm pool's uids, before a process takes one (`#warm-0`, ...). */
const WARM_UID_PREFIX = '#warm-';

/** How many warm guest hosts an agent keeps for `process` starts unless told (`--warm-pool`). */
export const DEFAULT_WARM_POOL = 2;

/**
 * How long an agent's warm shared host (`prewarmShared`) waits for a first shared start: a plan is
 * usually applied right after its agents start (`lowcloud up` starts local agents, then applies).
 */
const WARM_SHARED_IDLE_MS = 60_000;

/** A warm host that did not start is tried again no sooner than this. */
const WARM_RETRY_MS = 10_000;

/**
 * A batch's `start`s of one shared group announce it once: another announcement within this long
 * changes nothing (the group's spare is started or running, its idle time counted from about now),
 * and each cost ~50 us of the agent's thread (1,000 starts in a batch: ~5% of its CPU).
 */
const WARM_AGAIN_MS = 100;

/** The agent runs as root (its uid does not change while it runs; asked once, not at every start). */
const asRoot = process.getuid?.() === 0;

/** Where a process lives in the state directory. */
export function processPaths(stateDir: string, name: string) {
  return {
    runDir: path.join(stateDir, 'run', name),
    dataDir: path.join(stateDir, 'data', name),
    log: path.join(stateDir, 'logs', `${name}.log`),
  };
}

/** Runs guests with the sandbox: detached, so they outlive the agent and can be re-attached. */
export class SandboxRunner implements GuestRunner {
  private readonly uids: UidTable;
  private logDirMade = false;
  /**
   * The warm pool's placeholders (uid table keys) and their uids, each with a warm host running or
   * starting (sandbox warm-pool.ts); empty until a `process` start is asked for (`warm`), so an
   * agent that runs none keeps no idle host.
   */
  private readonly warmUids: { key: string; uid: number; triedAt: number }[] = [];
  private warmClosed = false;
  /** The shared group `warm` announced last, and when (`WARM_AGAIN_MS`). */
  private lastWarm: { group: string; at: number } | null = null;

  constructor(
    private readonly stateDir: string,
    private readonly blobs: BlobStore,
    private readonly disk: StateDisk,
    /** Opens the process's sealed values as it starts (secrets.ts). */
    private readonly key: OpeningKey,
    private readonly logLimits: LogLimits = DEFAULT_LOG_LIMITS,
    /** `--allow-unwalled`: a guest the wall cannot be built around runs without it (else it is refused). */
    private readonly allowUnwalled = false,
    /** `--netns`: the network namespace of a network-granted guest host (sandbox HostTuning.netns). */
    private readonly netns: NetnsMode = 'veth',
    /** `--cache`: admitted binaries (sandbox GuestOptions.cacheDir); default `<stateDir>/cache`. */
    private readonly cacheDir = path.join(stateDir, 'cache'),
    /** `--warm-pool`: warm guest hosts kept for `process` starts (0: none). */
    private readonly warmPool = DEFAULT_WARM_POOL,
  ) {
    this.uids = new UidTable(stateDir, disk);
  }

  async spawn(spec: ProcessSpec, specDigest: string): Promise<GuestHandle> {
    const opts = this.prepare(spec, specDigest);
    // A full disk while the sandbox prepares the guest is STATE_DISK_FULL too (it cleans up what it made).
    return this.disk.guardAsync(`starting ${spec.name}`, 0, () => spawnGuest(opts, { requireWall: !this.allowUnwalled, netns: this.netns }));
  }

  /**
   * A `start` of this spec has arrived (not yet checked or committed): a `shared` one's group gets
   * its spare guest host now, so the host's start (~0.2 s, walled) overlaps the group's check and
   * commit instead of following them (sandbox `warmSharedHost`: bounded, and it writes no file).
   * Never fails the call: a spare is an optimisation.
   */
  warm(spec: ProcessSpec): void {
    if (isolationOf(spec) === 'process') return this.fillWarmPool();
    if (spec.grants.disk !== undefined) return;
    // The sandbox groups shared guests by uid (one for all here), memory grant and wall: the same
    // binary, grants and opt-out announce the same group.
    const group = `${spec.binary} ${spec.allowUnwalled === true} ${JSON.stringify(spec.grants)}`;
    const now = performance.now();
    if (this.lastWarm !== null && this.lastWarm.group === group && now - this.lastWarm.at < WARM_AGAIN_MS) return;
    this.lastWarm = { group, at: now };
    try {
      const uid = asRoot ? this.uids.uidFor(SHARED_UID_KEY) : undefined;
      const runDir = processPaths(this.stateDir, spec.name).runDir;
      warmSharedHost({ wasm: this.blobs.path(spec.binary), args: [], env: {}, dirs: [], config: [], grants: spec.grants, detached: true, runDir, ...(uid === undefined ? {} : { uid }), ...(spec.allowUnwalled === true ? { allowUnwalled: true } : {}), isolation: 'shared' }, { requireWall: !this.allowUnwalled, netns: this.netns });
    } catch {
      // no uid left, or the like: the start itself will say so
    }
  }

  /**
   * The agent started with no `shared` process: one warm host under the shared processes' uid, for
   * the first shared group that needs a host (sandbox `claimShared`: it gets that group's limits),
   * ended after `WARM_SHARED_IDLE_MS` if none came. Where the agent keeps a warm pool at all
   * (`--warm-pool` above 0, `warmPoolRefusal`); never fails.
   */
  prewarmShared(): void {
    if (this.warmPool === 0) return;
    // Once the JSPI Node.js is known without holding the agent's thread (a candidate is run: ~0.2 s).
    void prewarmJspiNode().then(() => {
      const tuning = { requireWall: !this.allowUnwalled, netns: this.netns };
      if (this.warmClosed || warmPoolRefusal(tuning) !== null) return;
      try {
        void startWarmHost(this.uids.uidFor(SHARED_UID_KEY), path.join(this.stateDir, 'run'), tuning, WARM_SHARED_IDLE_MS);
      } catch {
        // no uid left, or the table cannot be written: the first shared start starts its host cold
      }
    });
  }

  /** The agent closes: its spare and warm guest hosts stop (the hosts with guests run on, detached). */
  async close(): Promise<void> {
    this.warmClosed = true;
    await Promise.all([stopSpareHosts(), stopWarmHosts()]);
  }

  /**
   * Keep `warmPool` warm hosts running, each under a uid reserved in the uid table under a
   * placeholder (`#warm-N`, kept across agent restarts: the next agent starts its hosts under the
   * same uids). A host that died or did not start is started again, no sooner than
   * `WARM_RETRY_MS` after its last try. Only as root on a machine with the kernel layer
   * (`warmPoolRefusal`); never fails: a warm host is an optimisation.
   */
  private fillWarmPool(): void {
    if (this.warmPool === 0 || this.warmClosed || warmPoolRefusal({ requireWall: !this.allowUnwalled, netns: this.netns }) !== null) return;
    try {
      // The placeholders in the table first (an earlier agent's), then new ones.
      const known = new Set(this.warmUids.map((w) => w.key));
      for (const key of this.uids.namesWith(WARM_UID_PREFIX)) if (this.warmUids.length < this.warmPool && !known.has(key)) this.warmUids.push({ key, uid: this.uids.uidFor(key), triedAt: 0 });
      for (let n = 0; this.warmUids.length < this.warmPool; n++) {
        const key = `${WARM_UID_PREFIX}${n}`;
        if (!this.uids.has(key)) this.warmUids.push({ key, uid: this.uids.uidFor(key), triedAt: 0 });
      }
    } catch {
      // no uid left, or the table cannot be written: no (more) warm hosts
    }
    const now = Date.now();
    for (const w of this.warmUids) {
      if (warmHostReady(w.uid) || now - w.triedAt < WARM_RETRY_MS) continue;
      w.triedAt = now;
      void startWarmHost(w.uid, path.join(this.stateDir, 'run'), { requireWall: !this.allowUnwalled, netns: this.netns });
    }
  }

  /**
   * The uid of a `process` guest's host: its own (allocated on its first start), or, on its first
   * start, a warm host's (whose placeholder is renamed to it: the host already runs as that uid,
   * and the sandbox gives it to this guest, `spawnGuest`). Its pool then gets another.
   */
  private processUid(name: string, opts: GuestOptions): number {
    if (this.uids.has(name) || warmRefusal(opts) !== null) return this.uids.uidFor(name);
    const i = this.warmUids.findIndex((w) => warmHostReady(w.uid));
    const w = this.warmUids[i];
    if (w === undefined) return this.uids.uidFor(name);
    // Renamed first: where the table cannot be written (a full disk) the start fails and the warm
    // host stays in the pool for the next one.
    const uid = this.uids.rename(w.key, name);
    this.warmUids.splice(i, 1);
    setImmediate(() => this.fillWarmPool());
    return uid;
  }

  /** A running guest with a new spec, in place (`GuestHandle.restart`); null where the handle cannot. */
  restart(handle: GuestHandle, spec: ProcessSpec, specDigest: string): Promise<GuestHandle> | null {
    const restart = handle.restart?.bind(handle);
    if (restart === undefined) return null;
    let opts: GuestOptions;
    try {
      opts = this.prepare(spec, specDigest);
    } catch (err) {
      return Promise.reject(err as Error); // the supervisor's replace handles a refused start
    }
    return this.disk.guardAsync(`restarting ${spec.name}`, 0, () => restart(opts));
  }

  /** The guest's directories and spec-digest, and its options for the sandbox. */
  private prepare(spec: ProcessSpec, specDigest: string): GuestOptions {
    const opened = this.openSecrets(spec);
    const p = processPaths(this.stateDir, spec.name);
    const shared = isolationOf(spec) === 'shared';
    // The logs directory once per runner (a start is one mkdir, not three: 1,000 starts in a batch).
    if (!this.logDirMade) fs.mkdirSync(path.dirname(p.log), { recursive: true, mode: 0o700 });
    this.logDirMade = true;
    if (spec.grants.disk !== undefined) fs.mkdirSync(p.dataDir, { recursive: true, mode: 0o700 });
    const out = this.logTarget(p.log);
    // Which spec it runs goes into the guest's record (`tag`, guest.json): for a shared guest that
    // record is written before it runs, so no file of the agent's is needed (nor the run
    // directory made here: the sandbox makes it), two file operations less a start (a profile of
    // 1,000 shared starts: ~0.4 s of the agent's 1.6 CPU-s at load 12). A process guest's record
    // is written once its host started, so its spec-digest is still written first.
    if (!shared) {
      fs.mkdirSync(p.runDir, { recursive: true, mode: 0o700 });
      this.writeSpecDigest(p.runDir, specDigest);
    }
    const opts: GuestOptions = {
      tag: specDigest,
      wasm: this.blobs.path(spec.binary),
      argv0: spec.name,
      args: spec.args,
      env: opened.env,
      dirs: spec.grants.disk === undefined ? [] : [{ host: p.dataDir, guest: '/data', image: `${p.dataDir}.ext4` }],
      config: opened.config,
      grants: spec.grants,
      stdout: out,
      stderr: out,
      detached: true,
      runDir: p.runDir,
      cacheDir: this.cacheDir,
      isolation: isolationOf(spec),
      ...(spec.allowUnwalled === true ? { allowUnwalled: true } : {}),
    };
    // As root each process's guest host runs as its own uid (the sandbox ignores it otherwise);
    // `shared` processes share one, so that their guests can share hosts (the sandbox groups guests
    // into hosts by uid, memory grant and wall).
    if (asRoot) opts.uid = shared ? this.uids.uidFor(SHARED_UID_KEY) : this.processUid(spec.name, opts);
    return opts;
  }

  /** A process's log file as the sandbox's output target (stdout and stderr both). */
  private logTarget(file: string) {
    return { file, maxBytes: this.logLimits.maxBytes, keep: this.logLimits.keep };
  }

  /** The env and config files the guest sees, its sealed values opened; throws a SecretError where one does not open. */
  openSecrets(spec: ProcessSpec): Pick<GuestOptions, 'env' | 'config'> {
    return openSecrets(spec, this.key, (d) => this.blobs.path(d));
  }

  /**
   * Which spec a guest runs, written before it runs: after a crash mid replace-config the agent
   * compares it with the desired state and converges (old or new, never a mix). Only ever written
   * while no guest of this process runs. Renamed into place but not fsynced (two fsyncs a start,
   * 2,000 for 1,000 starts): it matters only while the guest runs, an agent's crash leaves it in
   * the page cache, and no guest outlives the machine's.
   */
  private writeSpecDigest(runDir: string, specDigest: string): void {
    const file = path.join(runDir, 'spec-digest');
    this.disk.guard(`writing ${file}`, specDigest.length, () => {
      fs.writeFileSync(`${file}.tmp`, specDigest, { mode: 0o600 });
      fs.renameSync(`${file}.tmp`, file);
    });
  }

  /** The live guest of a process, if it survived the agent's restart, with the spec it runs. */
  async attach(name: string): Promise<{ handle: GuestHandle; specDigest: string | null } | null> {
    const { runDir, log } = processPaths(this.stateDir, name);
    // A shared guest's output goes to its log again (a process guest's record names its own).
    const out = this.logTarget(log);
    const handle = await attachGuest(runDir, { requireWall: !this.allowUnwalled, netns: this.netns }, { stdout: out, stderr: out });
    if (handle === null) return null;
    // The record's tag where it has one (guests started since it came); the file otherwise.
    return { handle, specDigest: handle.tag ?? readText(path.join(runDir, 'spec-digest')) };
  }

  /** How the guest ended while the agent was down, if it recorded it. */
  exitRecord(name: string): GuestExit | null {
    return readExitRecord(processPaths(this.stateDir, name).runDir);
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
