import {
  bodyDigest,
  ErrorCode,
  helloProofData,
  LowcloudError,
  publicSpec,
  signBytes,
  specDigest,
  type AgentEvent,
  type AgentStatus,
  type ProcessStatus,
  type Reply,
  type Request,
  type Results,
  type ResultType,
} from '@lowcloud/api';
import { probeCapabilities } from '@lowcloud/sandbox';
import { BlobMissingError, ProcessNotFoundError, SpecConflictError } from '../errors.js';
import { RequestAuthenticator } from './auth.js';
import type { Caller, Connection, ConnectionHost } from './connection.js';
import type { AgentCore } from './core.js';
import { streamLog } from './logs.js';
import { processPaths } from './runner.js';
import type { CallRecord } from './state-store.js';
import { withCrashPoints } from './test-hooks.js';

/**
 * The agent's calls, as a connection hands them over: the hello proof, request verification, the
 * read calls, and the state-changing calls, one at a time. What they act on is the `AgentCore`
 * (opened once by the agent's lifecycle, `Agent`).
 */
export class AgentCalls implements ConnectionHost {
  /** Mutating calls run one at a time: each is checked against, and moves, the generation. */
  private queue: Promise<unknown> = Promise.resolve();

  constructor(private readonly core: AgentCore) {}

  hello(req: Extract<Request, { type: 'hello' }>, binding: { kind: 'tls-exporter' | 'none'; value: string }): Reply {
    return { type: 'hello', id: req.id, agent: this.core.identity.publicKey, generation: this.core.state.generation, binding: binding.kind, proof: signBytes(this.core.identity.privateKey, helloProofData(req.challenge, binding.value)) };
  }

  verify(req: Exclude<Request, { type: 'hello' }>): Caller {
    return this.core.auth.check(req);
  }

  count(type: string, result: string): void {
    this.core.metrics.calls.inc({ type, result });
  }

  private result<T extends ResultType>(id: string, result: Results[T]): Reply {
    return { type: 'result', id, generation: this.core.state.generation, result };
  }

  async dispatch(req: Exclude<Request, { type: 'hello' }>, caller: Caller, conn: Connection): Promise<Reply | null> {
    const send = (r: Reply) => conn.send(r);
    switch (req.type) {
      case 'authenticate':
        return this.result<'authenticate'>(req.id, { key: caller.key, role: caller.role });
      case 'status':
        return this.result<'status'>(req.id, await this.status());
      case 'blob-status': {
        // Each digest once (a read key repeating one present digest 10,000 times makes one check).
        const digests = [...new Set(req.digests)];
        const partial: Record<string, number> = {};
        for (const d of digests) {
          const n = this.core.blobs.partialSize(d);
          if (n !== undefined) partial[d] = n;
        }
        return this.result<'blob-status'>(req.id, { present: digests.filter((d) => this.core.blobs.has(d)), partial });
      }
      case 'logs': {
        if (this.core.supervisors.get(req.process) === undefined) throw new ProcessNotFoundError(req.process);
        const file = processPaths(this.core.opts.stateDir, req.process).log;
        // The connection may close while the tail is read: stop the follower then too.
        let stop: (() => void) | null = null;
        let closed = false;
        const forget = conn.follow(() => {
          closed = true;
          stop?.();
        });
        stop = await streamLog(file, { tail: req.tail ?? 100, follow: req.follow === true }, (line) => send({ type: 'log', id: req.id, line }));
        if (closed) stop();
        else if (req.follow !== true) forget(); // a tail has ended: nothing is followed
        return this.result<'logs'>(req.id, {});
      }
      case 'watch': {
        const w = (event: AgentEvent) => send({ type: 'event', id: req.id, event });
        // Past the connection's limit follow throws: the watcher goes again (as on a closed connection).
        this.core.watchers.add(w);
        try {
          conn.follow(() => this.core.watchers.delete(w));
        } catch (err) {
          this.core.watchers.delete(w);
          throw err;
        }
        return this.result<'watch'>(req.id, {});
      }
      default:
        // A full disk met anywhere in a call (a directory made, the sandbox's files) is STATE_DISK_FULL.
        return this.serialized(() => withCrashPoints(req.type, () => this.core.disk.guardAsync(req.type, 0, () => this.mutate(req, caller))));
    }
  }

  private serialized<T>(f: () => Promise<T>): Promise<T> {
    const run = this.queue.then(f, f);
    // The caller gets the failure through `run`; the queue only keeps the next call from waiting on it.
    this.queue = run.catch(() => undefined);
    return run;
  }

  /**
   * The state-changing calls. The order of each, so that a call that is refused changes nothing and
   * a call that is answered is on disk (state file and audit line, both fsynced) first:
   *   1. checks, and the reserve of the state filesystem (not for stop: a stop is always possible);
   *   2. the desired state is written (`state.json`; `state.json.prev` keeps the generation before);
   *   3. what can fail is done (a guest started, replaced; a blob chunk stored);
   *   4. the audit line is appended (whole, or the log is left as it was);
   *   5. what cannot fail is done (a guest stopped), and the call is answered.
   * A failure in 3 or 4 undoes what came before it: the previous state is renamed back (no free
   * space needed) and a guest started by the call is stopped again (a replaced one started again).
   * An agent that dies after 2 finishes the call when it starts (its reconcile converges on the
   * desired state; a missing audit line is appended from the state file's `lastCall`).
   */
  private async mutate(req: Request, caller: Caller): Promise<Reply> {
    RequestAuthenticator.checkGeneration(req, caller.auth, this.core.state.generation);
    const generation = this.core.state.generation;
    const call = (process?: string): Omit<CallRecord, 'generation'> => ({ key: caller.key, type: req.type, body: bodyDigest(req), ...(process === undefined ? {} : { process }) });
    const record = (process?: string, blob?: { digest: string; offset: number; bytes: number; complete: boolean }) =>
      this.core.audit.append({ ...call(process), generation, ...(blob === undefined ? {} : { blob }) });
    const grace = this.core.opts.defaultGraceMs ?? 5000;
    switch (req.type) {
      case 'put-blob': {
        const data = Buffer.from(req.data, 'base64');
        const stored = this.core.blobs.has(req.digest);
        if (!stored) this.core.disk.admit(`put-blob ${req.digest.slice(0, 12)}`, data.length);
        const complete = await this.core.blobs.put(req.digest, req.size, req.offset, data);
        // Every accepted chunk, not only the last: a partial upload leaves a trace too.
        try {
          record(undefined, { digest: req.digest, offset: req.offset, bytes: data.length, complete });
        } catch (err) {
          if (!stored) this.core.blobs.undo(req.digest, req.offset);
          throw err;
        }
        return this.result<'put-blob'>(req.id, { complete });
      }
      case 'start': {
        const digest = specDigest(req.spec);
        const cur = this.core.state.processes[req.spec.name];
        const known = this.core.supervisors.get(req.spec.name);
        if (cur !== undefined && cur.specDigest === digest && known !== undefined && known.state !== 'stopped') return this.result<'stop'>(req.id, { changed: false });
        if (cur !== undefined && cur.specDigest !== digest) {
          throw new SpecConflictError(req.spec.name, `process ${req.spec.name} runs with another spec (${cur.specDigest.slice(0, 12)}); stop it first, or use replace-config for config changes`);
        }
        const missing = [req.spec.binary, ...Object.values(req.spec.config)].filter((d) => !this.core.blobs.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        this.core.disk.admit(`start ${req.spec.name}`, 2 * Buffer.byteLength(JSON.stringify(req.spec)));
        this.core.state.set(req.spec, call(req.spec.name));
        const s = known ?? this.core.newSupervisor(req.spec.name, req.spec, digest);
        try {
          await s.start();
        } catch (err) {
          this.core.state.rollback();
          if (s === known) s.adoptExited({ kind: 'stopped' }); // as it was: stopped
          throw err;
        }
        try {
          record(req.spec.name);
        } catch (err) {
          await s.stop(grace);
          this.core.state.rollback();
          throw err;
        }
        this.core.supervisors.set(req.spec.name, s);
        return this.result<'start'>(req.id, { changed: true, pid: s.handle?.pid ?? null });
      }
      case 'stop': {
        const sup = this.core.supervisors.get(req.process);
        if (this.core.state.processes[req.process] === undefined && sup === undefined) return this.result<'stop'>(req.id, { changed: false });
        this.core.state.remove(req.process, call(req.process));
        try {
          record(req.process);
        } catch (err) {
          this.core.state.rollback();
          throw err;
        }
        await sup?.stop(grace);
        this.core.supervisors.delete(req.process);
        return this.result<'stop'>(req.id, { changed: true });
      }
      case 'replace-config': {
        const cur = this.core.state.processes[req.process];
        const sup = this.core.supervisors.get(req.process);
        if (cur === undefined || sup === undefined) throw new ProcessNotFoundError(req.process);
        const spec = { ...cur.spec, config: req.config };
        const digest = specDigest(spec);
        if (digest !== req.specDigest) {
          throw new SpecConflictError(req.process, `replace-config ${req.process}: the new config gives spec ${digest.slice(0, 12)}, the call expects ${req.specDigest.slice(0, 12)}; only config may change this way`);
        }
        if (digest === cur.specDigest) return this.result<'stop'>(req.id, { changed: false });
        const missing = Object.values(req.config).filter((d) => !this.core.blobs.has(d));
        if (missing.length > 0) throw new BlobMissingError(missing);
        this.core.disk.admit(`replace-config ${req.process}`, 2 * Buffer.byteLength(JSON.stringify(spec)));
        this.core.state.set(spec, call(req.process));
        // Refused after the old guest was stopped: the old spec runs again (or its restart policy takes over).
        const revert = async (err: unknown): Promise<never> => {
          this.core.state.rollback();
          await sup.replace(cur.spec, cur.specDigest, grace).catch((e: unknown) => sup.adoptExited({ kind: 'trap', message: e instanceof Error ? e.message : String(e) }));
          throw err;
        };
        await sup.replace(spec, digest, grace).catch(revert);
        try {
          record(req.process);
        } catch (err) {
          await revert(err);
        }
        return this.result<'replace-config'>(req.id, { changed: true, pid: sup.handle?.pid ?? null });
      }
      default:
        throw new LowcloudError(ErrorCode.BAD_MESSAGE, `unexpected ${req.type}`);
    }
  }

  async status(): Promise<AgentStatus> {
    const processes: ProcessStatus[] = [];
    for (const [name, desired] of Object.entries(this.core.state.processes)) {
      const s = this.core.supervisors.get(name);
      const usage = s?.handle !== null && s?.handle !== undefined ? this.core.usage.of(name, s.handle.pid) : null;
      if (usage !== null) {
        this.core.metrics.cpu.set({ process: name }, usage.cpuSeconds);
        this.core.metrics.memory.set({ process: name }, usage.memoryBytes);
        this.core.metrics.disk.set({ process: name }, usage.diskBytes);
      }
      this.core.metrics.restarts.set({ process: name }, s?.restarts ?? 0);
      processes.push({
        name,
        spec: publicSpec(desired.spec),
        specDigest: desired.specDigest,
        state: s?.state ?? 'stopped',
        pid: s?.handle?.pid ?? null,
        restarts: s?.restarts ?? 0,
        lastExit: s?.lastExit ?? null,
        enforcement: s?.handle?.report ?? null,
        usage,
        nextRestart: s?.nextRestartAt === null || s?.nextRestartAt === undefined ? null : new Date(s.nextRestartAt).toISOString(),
      });
    }
    const stateDisk = this.core.diskSpace();
    return {
      agent: this.core.identity.publicKey,
      generation: this.core.state.generation,
      startedAt: this.core.startedAt,
      capabilities: await probeCapabilities(),
      processes,
      ...(stateDisk === null ? {} : { stateDisk }),
      audit: this.core.audit.health(),
      recovered: this.core.recovered,
    };
  }

}
