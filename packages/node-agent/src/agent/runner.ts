import fs from 'node:fs';
import path from 'node:path';
import type { ProcessSpec } from '@lowcloud/api';
import { attachGuest, readExitRecord, spawnGuest, type GuestExit, type GuestHandle } from '@lowcloud/sandbox';
import type { BlobStore } from './blob-store.js';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs.js';
import type { StateDisk } from './state-disk.js';
import type { GuestRunner } from './supervisor.js';
import { UidTable } from './uids.js';

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

  constructor(
    private readonly stateDir: string,
    private readonly blobs: BlobStore,
    private readonly disk: StateDisk,
    private readonly logLimits: LogLimits = DEFAULT_LOG_LIMITS,
  ) {
    this.uids = new UidTable(stateDir, disk);
  }

  async spawn(spec: ProcessSpec, specDigest: string): Promise<GuestHandle> {
    const p = processPaths(this.stateDir, spec.name);
    for (const d of [path.dirname(p.log), path.dirname(p.runDir), p.runDir]) fs.mkdirSync(d, { recursive: true, mode: 0o700 });
    // As root each process's guest host runs as its own uid (the sandbox ignores it otherwise).
    const uid = process.getuid?.() === 0 ? this.uids.uidFor(spec.name) : undefined;
    if (spec.grants.disk !== undefined) fs.mkdirSync(p.dataDir, { recursive: true, mode: 0o700 });
    const out = { file: p.log, maxBytes: this.logLimits.maxBytes, keep: this.logLimits.keep };
    // Which spec this guest runs, written before it runs: after a crash mid replace-config the agent
    // compares it with the desired state and converges (old or new, never a mix). Only ever written
    // while no guest of this process runs.
    this.disk.writeFile(path.join(p.runDir, 'spec-digest'), specDigest);
    // A full disk while the sandbox prepares the guest is STATE_DISK_FULL too (it cleans up what it made).
    return this.disk.guardAsync(`starting ${spec.name}`, 0, () => spawnGuest({
      wasm: this.blobs.path(spec.binary),
      argv0: spec.name,
      args: spec.args,
      env: spec.env,
      dirs: spec.grants.disk === undefined ? [] : [{ host: p.dataDir, guest: '/data', image: `${p.dataDir}.ext4` }],
      config: Object.entries(spec.config).map(([guest, digest]) => ({ guest, host: this.blobs.path(digest) })),
      grants: spec.grants,
      stdout: out,
      stderr: out,
      detached: true,
      runDir: p.runDir,
      cacheDir: path.join(this.stateDir, 'cache'),
      ...(uid === undefined ? {} : { uid }),
    }));
  }

  /** The live guest of a process, if it survived the agent's restart, with the spec it runs. */
  async attach(name: string): Promise<{ handle: GuestHandle; specDigest: string | null } | null> {
    const { runDir } = processPaths(this.stateDir, name);
    const handle = await attachGuest(runDir);
    if (handle === null) return null;
    return { handle, specDigest: readText(path.join(runDir, 'spec-digest')) };
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
