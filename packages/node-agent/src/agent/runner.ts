import fs from 'node:fs';
import path from 'node:path';
import type { ProcessSpec } from '@lowcloud/api';
import { attachGuest, spawnGuest, type GuestExit, type GuestHandle } from '@lowcloud/sandbox';
import type { BlobStore } from './blob-store.js';
import { writeFileDurable } from './durable.js';
import { DEFAULT_LOG_LIMITS, type LogLimits } from './logs.js';
import type { GuestRunner } from './supervisor.js';

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
  constructor(
    private readonly stateDir: string,
    private readonly blobs: BlobStore,
    private readonly logLimits: LogLimits = DEFAULT_LOG_LIMITS,
  ) {}

  async spawn(spec: ProcessSpec, specDigest: string): Promise<GuestHandle> {
    const p = processPaths(this.stateDir, spec.name);
    fs.mkdirSync(path.dirname(p.log), { recursive: true });
    if (spec.grants.disk !== undefined) fs.mkdirSync(p.dataDir, { recursive: true });
    const out = { file: p.log, maxBytes: this.logLimits.maxBytes, keep: this.logLimits.keep };
    const handle = await spawnGuest({
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
    });
    // Which spec this guest runs: after a crash mid replace-config the agent compares it with the
    // desired state and converges (old or new, never a mix).
    writeFileDurable(path.join(p.runDir, 'spec-digest'), specDigest);
    return handle;
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
    const text = readText(path.join(processPaths(this.stateDir, name).runDir, 'exit.json'));
    if (text === null) return null;
    const { at: _at, ...exit } = JSON.parse(text) as GuestExit & { at?: string };
    return exit as GuestExit;
  }
}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
