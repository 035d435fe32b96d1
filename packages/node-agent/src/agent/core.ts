import fs from 'node:fs';
import path from 'node:path';
import type { AgentEvent, KeyPair, ProcessSpec, Role } from '@lowcloud/api';
import type { AgentOptions } from './agent-options.js';
import { AuditLog } from './audit-log.js';
import { RequestAuthenticator } from './auth.js';
import { BlobStore } from './blob-store.js';
import { systemClock } from './clock.js';
import { loadOrCreateIdentity } from './identity.js';
import { DEFAULT_LOG_LIMITS, LogBudget } from './logs.js';
import { createMetrics, type Metrics, type NetworkUsage } from './metrics.js';
import { processPaths, SandboxRunner } from './runner.js';
import { secureCacheDir, secureStateDir } from './state-dir.js';
import { StateDisk, type StateDiskSpace } from './state-disk.js';
import { StateStore } from './state-store.js';
import { DEFAULT_BACKOFF, ProcessSupervisor } from './supervisor.js';
import { UsageMonitor } from './usage.js';

/**
 * What an agent holds, opened once from its state directory: its key, desired state, blobs, audit
 * log, the supervisors of its processes and its metrics. The lifecycle (`Agent`) and the calls
 * (`AgentCalls`) both work on it.
 */
export class AgentCore {
  readonly identity: KeyPair;
  readonly disk: StateDisk;
  readonly state: StateStore;
  readonly blobs: BlobStore;
  readonly audit: AuditLog;
  readonly auth: RequestAuthenticator;
  readonly runner: SandboxRunner;
  readonly logBudget: LogBudget;
  readonly usage: UsageMonitor;
  readonly metrics: Metrics;
  readonly supervisors = new Map<string, ProcessSupervisor>();
  readonly watchers = new Set<(e: AgentEvent) => void>();
  /** What the agent mended when it started (a broken state file, a missing audit line, stray guests). */
  readonly recovered: string[] = [];
  readonly startedAt = new Date().toISOString();
  /** What the network holds of the agent (set once it listens). */
  network: () => NetworkUsage | null = () => null;

  constructor(readonly opts: AgentOptions) {
    secureStateDir(opts.stateDir, (line) => process.stderr.write(`${line}\n`));
    if (opts.cacheDir !== undefined) secureCacheDir(opts.cacheDir);
    this.identity = loadOrCreateIdentity(opts.stateDir);
    const report = (line: string) => process.stderr.write(`${line}\n`);
    this.disk = new StateDisk(opts.stateDir, opts.stateReserveBytes);
    this.state = new StateStore(opts.stateDir, { disk: this.disk, report });
    if (this.state.recovered !== null) this.recovered.push(this.state.recovered);
    this.blobs = new BlobStore(opts.stateDir, opts.maxBlobBytes, this.disk);
    this.audit = new AuditLog(path.join(opts.stateDir, 'audit.log'), this.identity, report, this.disk, this.state.audit);
    this.state.trackAudit(() => this.audit.position());
    // A group commit saves several calls at once: each that has no line yet gets one, in order.
    for (const call of this.state.lastCalls) {
      const lastLine = this.audit.health().entries;
      this.audit.mend(call);
      if (this.audit.health().entries > lastLine) this.recovered.push(`audit line ${this.audit.health().entries} (${call.type} ${call.process ?? ''}): the call was saved, the agent had stopped before its line`);
    }
    for (const note of this.blobs.trimUnaccepted(this.audit.uploads())) {
      report(`lowcloud agent: ${note}`);
      this.recovered.push(note);
    }
    const roles = new Map<string, Role>([...(opts.trustedRead ?? []).map((k): [string, Role] => [k, 'read']), ...opts.trusted.map((k): [string, Role] => [k, 'write'])]);
    this.auth = new RequestAuthenticator(this.identity.publicKey, roles, () => (opts.clock ?? systemClock).now());
    const logs = opts.logs ?? DEFAULT_LOG_LIMITS;
    this.runner = new SandboxRunner(opts.stateDir, this.blobs, this.disk, this.identity, logs, opts.allowUnwalled === true, opts.netns ?? 'veth', opts.cacheDir, opts.warmPool);
    this.logBudget = new LogBudget(path.join(opts.stateDir, 'logs'), logs.totalBytes);
    this.usage = new UsageMonitor(() => this.diskTargets(), opts.diskIntervalMs);
    this.metrics = createMetrics(
      () => this.network(),
      () => ({ disk: this.diskSpace(), audit: this.audit.health() }),
    );
  }

  supervisor(name: string, spec: ProcessSpec, digest: string): ProcessSupervisor {
    const sup = this.newSupervisor(name, spec, digest);
    this.supervisors.set(name, sup);
    return sup;
  }

  /** A supervisor not yet known to the agent (a start registers it once the call is accepted). */
  newSupervisor(name: string, spec: ProcessSpec, digest: string, runDirs: ReadonlySet<string> | null = null): ProcessSupervisor {
    // A process new here has no run directory (a shared guest never makes one): asked without an
    // exception, 1,000 new processes in a batch (a thrown ENOENT each was ~40 ms of the agent's CPU),
    // and not at all where the caller listed the run directories (`runDirNames`).
    const file = path.join(processPaths(this.opts.stateDir, name).runDir, 'restarts');
    const restarts = (runDirs === null || runDirs.has(name)) && fs.existsSync(file) ? Number(readText(file) ?? 0) : 0;
    return new ProcessSupervisor(name, spec, digest, {
      runner: this.runner,
      clock: this.opts.clock ?? systemClock,
      backoff: this.opts.backoff ?? DEFAULT_BACKOFF,
      emit: (e) => this.emit(e),
      saveRestarts: (n, count) => {
        // A count that cannot be saved (a full disk) is said, not thrown: the restart goes on.
        try {
          const dir = processPaths(this.opts.stateDir, n).runDir;
          fs.mkdirSync(dir, { recursive: true });
          this.disk.writeFile(path.join(dir, 'restarts'), String(count));
        } catch (err) {
          process.stderr.write(`lowcloud agent: ${n}: restart count ${count} not saved: ${err instanceof Error ? err.message : String(err)}\n`);
        }
      },
    }, restarts);
  }

  /** The names of the processes with a run directory now, or null where the directory cannot be read. */
  runDirNames(): ReadonlySet<string> | null {
    try {
      return new Set(fs.readdirSync(path.join(this.opts.stateDir, 'run')));
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'ENOENT' ? new Set() : null;
    }
  }

  emit(e: AgentEvent): void {
    if (e.kind === 'grant-violated') this.metrics.violations.inc({ process: e.process, grant: e.grant ?? 'unknown' });
    for (const w of this.watchers) w(e);
  }

  /** The state filesystem's free space, or null when it cannot be asked (statfs failing). */
  diskSpace(): StateDiskSpace | null {
    try {
      return this.disk.space();
    } catch {
      return null;
    }
  }

  /** The data directory of every running guest with a disk grant (what the usage monitor walks). */
  private diskTargets(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [name, s] of this.supervisors) if (s.handle !== null && s.spec.grants.disk !== undefined) out.set(name, processPaths(this.opts.stateDir, name).dataDir);
    return out;
  }

}

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch {
    return null;
  }
}
