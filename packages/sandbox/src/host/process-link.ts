import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { decodeLine, encodeLine, Lines, SHARED_CTL, type GuestBoot } from '../common/protocol.js';
import type { GuestExit } from '../types.js';
import { parseSharedHostReply } from './messages.js';

/**
 * A `process` guest host's control FIFOs (guest/main.ts `--ctl`), host side: one link per host
 * in this process, opened at its first restart in place. What comes back is hostile (code that left
 * the WebAssembly sandbox writes what it likes): parsed closed, and believed only as the answer to
 * the one restart this side waits for. A host that does not answer in time is stopped by the
 * caller and its guest started afresh.
 */
export class ProcessLink {
  private static readonly links = new Map<string, ProcessLink>();
  private readonly out: net.Socket;
  private readonly replies: net.Socket;
  private readonly exits = new Map<string, GuestExit>();
  private waiter: { guest: string; done: () => void } | null = null;

  private constructor(readonly ctl: string) {
    this.out = new net.Socket({ fd: fs.openSync(path.join(ctl, SHARED_CTL.requests), fs.constants.O_WRONLY | fs.constants.O_NONBLOCK), readable: false, writable: true });
    this.out.on('error', () => undefined);
    this.out.unref();
    this.replies = new net.Socket({ fd: fs.openSync(path.join(ctl, SHARED_CTL.replies), fs.constants.O_RDONLY | fs.constants.O_NONBLOCK), readable: true, writable: false });
    this.replies.on('error', () => undefined);
    this.replies.unref();
    const lines = new Lines(2 ** 16);
    this.replies.setEncoding('utf8');
    this.replies.on('data', (chunk: string) => {
      for (const line of lines.push(chunk)) {
        let m;
        try {
          m = parseSharedHostReply(decodeLine(line));
        } catch {
          continue;
        }
        if (m?.type === 'exit') {
          // Only the guests this side stopped for a restart are asked about; a few are kept.
          this.exits.set(m.guest, m.exit);
          if (this.exits.size > 16) this.exits.delete(this.exits.keys().next().value as string);
        } else if (m?.type === 'started' && m.guest === this.waiter?.guest) this.waiter.done();
      }
    });
  }

  /** The link to the host with control FIFOs in `ctl`, or null when they cannot be opened (the host is gone). */
  static to(ctl: string): ProcessLink | null {
    const known = ProcessLink.links.get(ctl);
    if (known !== undefined) return known;
    try {
      const link = new ProcessLink(ctl);
      ProcessLink.links.set(ctl, link);
      return link;
    } catch {
      return null;
    }
  }

  /** The host ended: its link is closed. */
  static close(ctl: string): void {
    const link = ProcessLink.links.get(ctl);
    ProcessLink.links.delete(ctl);
    link?.out.destroy();
    link?.replies.destroy();
  }

  /**
   * Start the host's guest `old` again as `next`: true once the host says `next` runs (then `old`
   * has ended; its exit, where the host told it, is `exitOf(old)`), false when it did not within
   * `timeoutMs` or the link is gone.
   */
  async restart(next: GuestBoot, timeoutMs: number): Promise<boolean> {
    if (this.waiter !== null || this.out.destroyed) return false;
    let timer: NodeJS.Timeout | undefined;
    const ok = await new Promise<boolean>((resolve) => {
      this.waiter = { guest: next.id, done: () => resolve(true) };
      timer = setTimeout(() => resolve(false), timeoutMs);
      this.out.write(encodeLine({ type: 'restart', guest: next }));
    });
    clearTimeout(timer);
    this.waiter = null;
    return ok;
  }

  exitOf(guest: string): GuestExit | null {
    return this.exits.get(guest) ?? null;
  }
}
