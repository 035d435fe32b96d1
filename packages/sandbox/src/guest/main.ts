import fs from 'node:fs';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { writeAll } from '../common/durable-file.js';
import type { GuestExit } from '../types.js';
import type { GuestBootOptions, WorkerResult } from './options.js';

/**
 * The guest host process: one per guest. Reads its boot options, runs the guest in a worker
 * thread, and turns how the guest ended into an exit record (and its own exit status).
 *
 * Exit status of this process: the guest's own code for an exit; 134 for a trap (SIGABRT-like,
 * like a native program that aborts); 143 when stopped on request.
 */
const optionsPath = process.argv[2];
if (optionsPath === undefined) {
  process.stderr.write('lowcloud guest host: missing options file\n');
  process.exit(70);
}
const opts = JSON.parse(fs.readFileSync(optionsPath, 'utf8')) as GuestBootOptions;
// Inside the wall the options file is a read-only bind mount; the host removes it.
if (!opts.detached && !opts.walled) fs.rmSync(optionsPath, { force: true });

let finished = false;
function finish(exit: GuestExit, status: number): void {
  if (finished) return;
  finished = true;
  // The host made exit.json for this process (inside the wall: a bind mount, written in place);
  // it reads it only after this process is gone. The launcher removes the firewall table.
  if (opts.runDir !== null) writeExitRecord(path.join(opts.runDir, 'exit.json'), JSON.stringify({ ...exit, at: new Date().toISOString() }));
  if (process.send !== undefined && process.connected) {
    process.send({ type: 'exit', exit }, () => process.exit(status));
    setTimeout(() => process.exit(status), 200).unref();
  } else {
    process.exit(status);
  }
}

/**
 * exit.json in place (inside the wall it is a bind-mounted file: no temporary file can be renamed
 * over it): all of it and fsynced, or empty, which the host reads as no record.
 */
function writeExitRecord(file: string, text: string): void {
  let fd: number | null = null;
  try {
    fd = fs.openSync(file, 'w');
    writeAll(fd, text, 0);
    fs.fsyncSync(fd);
  } catch {
    if (fd !== null) fs.ftruncateSync(fd, 0);
  } finally {
    if (fd !== null) fs.closeSync(fd);
  }
}

// Kernel objects (cgroups, the firewall's cgroup v2) were joined by the launcher before it started
// this process: nothing here runs outside them, and there is nothing to wait for.

const heapMb = opts.grants.memory === undefined ? undefined : Math.max(16, Math.floor(opts.grants.memory / 2 ** 20 / 4));
const worker = new Worker(new URL('./worker.js', import.meta.url), {
  workerData: opts,
  stdin: false,
  stdout: false,
  stderr: false,
  ...(heapMb === undefined ? {} : { resourceLimits: { maxOldGenerationSizeMb: heapMb, maxYoungGenerationSizeMb: 8 } }),
});
worker.on('message', (r: WorkerResult) => {
  if (r.kind === 'exit') finish(r, r.code);
  else if (r.kind === 'trap') {
    process.stderr.write(`lowcloud: guest trapped: ${r.message}\n`);
    finish(r, 134);
  } else finish(r, 137);
});
worker.on('error', (err) => {
  const oom = /heap|memory/i.test(err.message);
  if (oom) finish({ kind: 'violation', grant: 'memory', detail: err.message }, 137);
  else finish({ kind: 'trap', message: err.message }, 134);
});
worker.on('exit', () => finish({ kind: 'trap', message: 'guest worker ended without a result' }, 134));

const stop = () => {
  void worker.terminate();
  finish({ kind: 'stopped' }, 143);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Not detached: the guest must not outlive the process that started it - also when that process
// died before this one got here (then the channel is already gone).
if (!opts.detached) {
  process.on('disconnect', stop);
  if (!process.connected) stop();
}
