import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { decodeLine, encodeLine, GUEST_HOST_FD, Lines, OUT_PIECE_BYTES, parseSharedHostRequest, SHARED_CTL, type GuestBoot, type SharedHostReply } from '../common/protocol.js';
import { ByteBudget, DroppingOutput } from '../common/output-budget.js';
import type { GuestExit } from '../types.js';
import { closeInheritedFds } from './stray-fds.js';
import { SuspendingGuest } from './suspending.js';

/**
 * A shared guest host: one process (one wall) running many preview1 guests on its main thread.
 * Each guest is an instance of a module compiled once per digest; a guest that waits in a WASI
 * call (a clock wait) is suspended there (JSPI, Node.js >= 24) and the thread runs the others.
 * Guests are added and stopped over its channel (fd 3, lines); their output and exits go back over
 * it: this process writes no file. A guest that traps, exits or fails to grow its memory ends alone.
 *
 * The host side only starts a shared host on a Node.js with JSPI (host/shared-host.ts); without
 * it this process refuses to run rather than block every guest in one thread.
 */
const jspi = typeof (WebAssembly as { Suspending?: unknown }).Suspending === 'function';
const modules = new Map<string, WebAssembly.Module>();
const guests = new Map<string, SuspendingGuest>();
/** Exits since the channel went away (the agent restarts), for whoever re-attaches. */
const undelivered: SharedHostReply[] = [];

/** The control FIFOs once the channel is gone (detached), or null. */
let fifo: net.Socket | null = null;
const detached = process.argv.includes('--detached');
const ctlAt = process.argv.indexOf('--ctl');
const ctl = ctlAt > 0 ? (process.argv[ctlAt + 1] ?? null) : null;

// Before any guest runs: nothing inherited by accident reaches one (guest/stray-fds.ts).
closeInheritedFds([GUEST_HOST_FD.channel]);
/** The channel to the process that started this one, while it is there. */
const channel = new net.Socket({ fd: GUEST_HOST_FD.channel, readable: true, writable: true });
let connected = true;

/** Replies not sent yet: sent together, as one write, at the end of this turn. */
let outbox: SharedHostReply[] = [];
/** Bytes of guest output in `outbox`. */
let outboxBytes = 0;

function send(m: SharedHostReply): void {
  if (connected) {
    if (outbox.push(m) === 1) setImmediate(flush);
    return;
  }
  toFifo(m);
}

function flush(): void {
  const all = outbox;
  outbox = [];
  outboxBytes = 0;
  // The channel went in the meantime: to the FIFOs (exits kept), as if sent now.
  if (!connected) all.forEach(toFifo);
  else channel.write(all.map(encodeLine).join(''));
}

function toFifo(m: SharedHostReply): void {
  // Exits are kept (the last 10,000) for the next host side's hello, and sent now too.
  if (m.type === 'exit' && undelivered.push(m) > 10_000) undelivered.shift();
  // Nobody may be reading: past 1 MiB queued, output and answers are dropped.
  if (fifo !== null && (m.type === 'exit' || fifo.writableLength < 2 ** 20)) fifo.write(encodeLine(m));
}

/**
 * The control FIFOs, opened at start, read-write: that never waits for the other side, never reads
 * end-of-file when a host side goes away, and never fails a write for want of a reader. Opened now,
 * not when the channel goes: a host side that re-attaches at once after its starter was killed can
 * open its end (a FIFO with no reader refuses a non-blocking writer) before this process has seen
 * the channel go; what it sends waits in the FIFO until then.
 */
const ctlFds =
  detached && ctl !== null
    ? [SHARED_CTL.requests, SHARED_CTL.replies].map((f) => fs.openSync(path.join(ctl, f), fs.constants.O_RDWR | fs.constants.O_NONBLOCK))
    : null;

/** Listen on the control FIFOs (the starter is gone). */
function listenOnFifos([requestsFd, repliesFd]: number[]): void {
  const requests = new net.Socket({ fd: requestsFd as number, readable: true, writable: false });
  fifo = new net.Socket({ fd: repliesFd as number, readable: false, writable: true });
  const lines = new Lines();
  requests.setEncoding('utf8');
  requests.on('data', (chunk: string) => {
    for (const line of lines.push(chunk)) {
      try {
        handle(decodeLine(line));
      } catch {
        // a line cut short by a host side that died mid-write: the next one is whole
      }
    }
  });
}

function handle(raw: unknown): void {
  let m;
  try {
    m = parseSharedHostRequest(raw);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    process.stderr.write(`lowcloud shared guest host: ${why}\n`);
    // An add it cannot take, of a guest it can name: its start ends now with the reason, not after
    // the starter's wait for a confirmation (an exit before `started` settles the start).
    const id = addedId(raw);
    if (id !== null && !guests.has(id)) send({ type: 'exit', guest: id, exit: { kind: 'trap', message: `the shared guest host refused the start: ${why}` }, status: 134 });
    return;
  }
  if (m.type === 'add') add(m.guest, m.digest, m.module);
  else if (m.type === 'stop') guests.get(m.guest)?.stop();
  else if (m.type === 'usage') {
    const g = guests.get(m.guest);
    if (g !== undefined) send({ type: 'usage', guest: m.guest, seq: m.seq, memoryBytes: g.memoryBytes(), cpuSeconds: g.cpuSeconds() });
  } else if (m.type === 'hello') {
    for (const e of undelivered) fifo?.write(encodeLine(e));
    send({ type: 'live', guests: [...guests.keys()] });
  } else if (m.type === 'close' && guests.size === 0) process.exit(0);
}

/** The guest id of an `add` that did not parse whole, where it has one. */
function addedId(raw: unknown): string | null {
  if (typeof raw !== 'object' || raw === null || (raw as { type?: unknown }).type !== 'add') return null;
  const guest = (raw as { guest?: unknown }).guest;
  const id = typeof guest === 'object' && guest !== null ? (guest as { id?: unknown }).id : undefined;
  return typeof id === 'string' && id.length <= 256 ? id : null;
}

function add(boot: GuestBoot, digest: string, bytes: Uint8Array | null): void {
  if (guests.has(boot.id)) return;
  const output = guestOutput(boot.id);
  const ended = (exit: GuestExit, status: number) => {
    output.end();
    guests.delete(boot.id);
    send({ type: 'exit', guest: boot.id, exit, status });
    // Re-attached (no starter to send `close`): the last guest gone, the host goes too, once its
    // last words are in the FIFO (they stay readable there after it exits).
    if (guests.size === 0 && fifo !== null) fifo.end(() => process.exit(0));
  };
  let module = modules.get(digest);
  try {
    if (module === undefined) {
      if (bytes === null) throw new Error(`module ${digest} was never sent`);
      module = new WebAssembly.Module(bytes as Uint8Array<ArrayBuffer>);
      modules.set(digest, module);
    }
  } catch (err) {
    ended({ kind: 'trap', message: `compiling the module: ${err instanceof Error ? err.message : String(err)}` }, 134);
    return;
  }
  const guest = new SuspendingGuest(boot, module, {
    out: (fd, data) => output.write(fd, data),
    ended,
  });
  guests.set(boot.id, guest);
  // Said as soon as it is held here (the starter answers its start on this), before it runs: the
  // adds of one message are all confirmed before the first of them instantiates and runs to its
  // first wait, which for a batch of 256 would otherwise hold every confirmation back.
  send({ type: 'started', guest: boot.id });
  setImmediate(() => guest.start());
}

/** At most this much of the guests' output waits in this process to be sent (all guests together). */
const OUT_QUEUE_BYTES = 16 * 2 ** 20;

/**
 * A guest's output on its way to the starter, within its budget (common/output-budget.ts): what it
 * writes past it, or past what may wait here unsent, is dropped, not queued. This thread runs the
 * other guests too, so this one cannot be made to wait alone; and a guest that writes without a
 * pause holds the thread that would send what it wrote (64 MiB in one go, encoded, was past this
 * process's heap, and the host and every guest in it ended).
 */
function guestOutput(id: string): DroppingOutput {
  return new DroppingOutput(
    (fd, data) => {
      if (connected) outboxBytes += data.length;
      for (let at = 0; at < data.length; at += OUT_PIECE_BYTES) send({ type: 'out', guest: id, fd, data: data.subarray(at, at + OUT_PIECE_BYTES) });
    },
    new ByteBudget(),
    (bytes) => outboxBytes + (connected ? channel.writableLength : 0) + bytes > OUT_QUEUE_BYTES,
    OUT_PIECE_BYTES,
  );
}

/** Requests from the starter, one a line (no cap that matters: it is the trusted side, and a module travels in one line). */
const requests = new Lines(2 ** 29 - 2 ** 10);
channel.setEncoding('utf8');
channel.on('data', (chunk: string) => {
  for (const line of requests.push(chunk)) {
    try {
      handle(decodeLine(line));
    } catch {
      // not JSON: said by handle for a message that parses but is malformed; this one is dropped
    }
  }
});

const stopAll = () => {
  for (const g of guests.values()) g.stop();
  // Stopped guests end at once (they wait in a call); one that computes is ended with the process.
  setTimeout(() => process.exit(143), 50);
};
process.on('SIGTERM', stopAll);
process.on('SIGINT', stopAll);
// Detached (agent mode, `--detached`): it outlives a lost channel, its guests keep running and
// their exits are kept for a re-attach; otherwise its guests die with the process that started them.
// A detached host with no guest left ends too: nothing would re-attach to it (a host started ahead
// of need, whose starter stopped before its spare time ran out, stayed forever).
const disconnected = () => {
  if (!connected) return;
  connected = false;
  channel.destroy();
  if (!detached) stopAll();
  else if (guests.size === 0) process.exit(0);
  else if (ctlFds !== null) listenOnFifos(ctlFds);
};
channel.on('end', disconnected);
channel.on('close', disconnected);
channel.on('error', disconnected);

if (!jspi) {
  process.stderr.write('lowcloud shared guest host: this Node.js has no WebAssembly.Suspending (JSPI, Node.js >= 24)\n');
  process.exit(70);
}
send({ type: 'hello', jspi });
