import fs from 'node:fs';
import net from 'node:net';
import { writeAll } from '../common/durable-file.js';
import { writeAll as writeAllTo } from '../common/rotating-file.js';
import path from 'node:path';
import { decodeLine, encodeLine, GUEST_HOST_FD, Lines, parseHostBoot, parseProcessHostRequest, SHARED_CTL, type GuestBoot, type GuestHostMessage, type HostBoot, type SharedHostReply } from '../common/protocol.js';
import type { GuestExit } from '../types.js';
import { exitGuestHost } from './gpu/start.js';
import { Instance } from './instance.js';
import { sleepSync } from '../common/sleep.js';
import { closeInheritedFds } from './stray-fds.js';

/**
 * The guest host process: reads its boot options from the host's pipe, runs each guest in an
 * instance of its own (instance.ts), records how each ended (its exit record, and a message to
 * the host while it listens), and exits when every guest has: with the guest's own status when it
 * carries one guest (the first failing one's otherwise).
 *
 * Kernel objects (cgroups, the firewall's cgroup v2) were joined by the launcher before it started
 * this process: nothing here runs outside them, and there is nothing to wait for.
 */
function readBoot(): HostBoot {
  try {
    return parseHostBoot(JSON.parse(readToEnd(GUEST_HOST_FD.boot)));
  } catch (err) {
    process.stderr.write(`lowcloud guest host: no boot options on fd ${GUEST_HOST_FD.boot}: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(70);
  }
}

/** The whole pipe, then closed (it may have been handed over non-blocking). */
function readToEnd(fd: number): string {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      sleepSync(1);
      continue;
    }
    if (n === 0) break;
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  fs.closeSync(fd);
  return Buffer.concat(chunks).toString('utf8');
}

// Before anything else (the boot options are read from fd 6): nothing inherited by accident reaches a guest.
closeInheritedFds([GUEST_HOST_FD.channel, GUEST_HOST_FD.boot, GUEST_HOST_FD.exit]);
const boot = readBoot();
/** The channel to the process that started this one (attached only, fd 3): exits go there too, and its end stops the guests. */
const channel = boot.detached ? null : new net.Socket({ fd: GUEST_HOST_FD.channel, readable: true, writable: true });
let connected = channel !== null;
let left = boot.guests.length;
let status: number | null = null;
let sending = 0;
/** Guests stopped to be started again in place (`restart`, below), by id. */
const replaced = new Set<string>();
/** The control FIFO the answers go to (`--ctl`), or null. */
let replies: net.Socket | null = null;

function ended(guest: GuestBoot, exit: GuestExit, code: number): void {
  // Stopped to be started again in place (`restart`): its end is told on the control FIFO, and the host runs on.
  if (replaced.delete(guest.id)) {
    reply({ type: 'exit', guest: guest.id, exit, status: code });
    return;
  }
  // The host made the exit record for this guest (inside the wall: a bind mount, written in
  // place); it reads it only after this process is gone. The launcher removes the firewall table.
  const record = JSON.stringify({ ...exit, at: new Date().toISOString() });
  // Down the launcher's pipe (a detached process guest host: nothing of the host's disk is writable here).
  if (guest.exitFd === true) writeRecordTo(GUEST_HOST_FD.exit, record);
  else if (guest.exitRecord !== null) writeExitRecord(guest.exitRecord, record);
  if (status === null || status === 0) status = code;
  if (channel !== null && connected) {
    sending++;
    const message: GuestHostMessage = { type: 'exit', guest: guest.id, exit };
    channel.write(encodeLine(message), () => {
      sending--;
      if (left === 0 && sending === 0) exitGuestHost(status ?? 0, instances);
    });
  }
  if (--left > 0) return;
  if (sending === 0) exitGuestHost(status ?? 0, instances);
  setTimeout(() => exitGuestHost(status ?? 0, instances), 200).unref();
}

/** The exit record down a pipe, whole (a small write is atomic); a pipe that is gone drops it. */
function writeRecordTo(fd: number, text: string): void {
  try {
    writeAllTo(fd, Buffer.from(text));
  } catch {
    // no launcher to read it: the host classifies the exit from the process's end
  }
}

/**
 * An exit record in place (inside the wall it is a bind-mounted file: no temporary file can be
 * renamed over it): all of it and fsynced, or empty, which the host reads as no record.
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

const instances = boot.guests.map((g) => new Instance(g, (exit, code) => ended(g, exit, code)));

/**
 * Control FIFOs (`--ctl DIR`, a detached host with one guest): the agent's requests to start its
 * guest again with a new boot in this process (a replace-config in place, no new wall or Node.js
 * start-up), and the answers. Opened read-write, non-blocking: never waits for the other side,
 * never reads end-of-file when an agent goes away. What comes in is parsed closed.
 */
const ctlAt = process.argv.indexOf('--ctl');
const ctl = ctlAt > 0 ? (process.argv[ctlAt + 1] ?? null) : null;
let restarting = false;

function reply(m: SharedHostReply): void {
  // Nobody may be reading: past 1 MiB queued, answers are dropped (a re-attached agent falls back to a fresh start).
  if (replies !== null && replies.writableLength < 2 ** 20) replies.write(encodeLine(m));
}

async function restart(next: GuestBoot): Promise<void> {
  const old = instances[0];
  if (restarting || instances.length !== 1 || old === undefined || old.gpu || left !== 1) return;
  restarting = true;
  replaced.add(old.boot.id);
  const onEnd = (exit: GuestExit, code: number) => ended(next, exit, code);
  // On its thread where it waits (no new thread: ~40-60 ms of a worker's start here); otherwise its
  // thread ended before the next one starts: never two of them at the guest's directories.
  if (!(await old.restartInPlace(next, onEnd))) {
    await old.stop();
    instances[0] = new Instance(next, onEnd);
  }
  restarting = false;
  reply({ type: 'started', guest: next.id });
}

if (boot.detached && ctl !== null) {
  const [requestsFd, repliesFd] = [SHARED_CTL.requests, SHARED_CTL.replies].map((f) => fs.openSync(path.join(ctl, f), fs.constants.O_RDWR | fs.constants.O_NONBLOCK));
  replies = new net.Socket({ fd: repliesFd as number, readable: false, writable: true });
  replies.on('error', () => undefined);
  replies.unref();
  const requests = new net.Socket({ fd: requestsFd as number, readable: true, writable: false });
  requests.on('error', () => undefined);
  requests.unref();
  const lines = new Lines(2 ** 26);
  requests.setEncoding('utf8');
  requests.on('data', (chunk: string) => {
    for (const line of lines.push(chunk)) {
      try {
        void restart(parseProcessHostRequest(decodeLine(line)).guest);
      } catch (err) {
        process.stderr.write(`lowcloud guest host: ${err instanceof Error ? err.message : String(err)}\n`);
      }
    }
  });
}

const stop = () => {
  for (const i of instances) void i.stop();
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
// Not detached: the guests must not outlive the process that started them - also when that process
// died before this one got here (then the channel is already gone).
if (channel !== null) {
  const gone = () => {
    if (!connected) return;
    connected = false;
    stop();
  };
  channel.on('end', gone);
  channel.on('close', gone);
  channel.on('error', gone);
  // Nothing is sent this way: read only to see the end.
  channel.resume();
}
