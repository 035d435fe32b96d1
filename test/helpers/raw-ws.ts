import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';

/**
 * A WebSocket client written byte by byte, for sending what no well-behaved library sends:
 * frames announcing more than they carry, reserved opcodes, garbage after the upgrade.
 */
export interface RawWs {
  socket: net.Socket;
  /** Text frames the agent sent, in order. */
  texts: string[];
  /** The close frame's code, once the agent sent one. */
  closeCode: number | null;
  closeReason: string;
  /** Resolves when the TCP connection is gone. */
  closed: Promise<void>;
  isClosed(): boolean;
  sendText(text: string): void;
  /** Wait for the next text frame (parsed as JSON). */
  next(timeoutMs?: number): Promise<{ type: string; id?: string | null; error?: { code: string; message: string; details?: Record<string, unknown> }; result?: Record<string, unknown>; generation?: number }>;
}

/** One client frame (masked, as a client must). `announce` overrides the length in the header. */
export function frame(opcode: number, payload: Buffer, opts: { fin?: boolean; announce?: number } = {}): Buffer {
  const len = opts.announce ?? payload.length;
  const head: number[] = [(opts.fin === false ? 0 : 0x80) | opcode];
  if (len < 126) head.push(0x80 | len);
  else if (len < 65536) head.push(0x80 | 126, len >> 8, len & 255);
  else {
    head.push(0x80 | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  const mask = randomBytes(4);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (mask[i % 4] as number);
  return Buffer.concat([Buffer.from(head), mask, body]);
}

/** Connect and upgrade by hand; resolves after the agent's 101 (or rejects with its status line). */
export function rawConnect(url: string, headers: Record<string, string> = {}, localAddress?: string): Promise<RawWs> {
  const u = new URL(url);
  const port = Number(u.port);
  return new Promise((resolve, reject) => {
    const local = localAddress === undefined ? {} : { localAddress };
    const socket: net.Socket = u.protocol === 'wss:' ? tls.connect({ host: u.hostname, port, rejectUnauthorized: false, ...local }) : net.connect({ port, host: u.hostname, ...local });
    socket.on('error', () => undefined); // the tests look at how the connection ended, not why
    let buf = Buffer.alloc(0);
    let upgraded = false;
    let closed = false;
    const waiters: (() => void)[] = [];
    const ws: RawWs = {
      socket,
      texts: [],
      closeCode: null,
      closeReason: '',
      closed: new Promise((r) => socket.once('close', () => ((closed = true), r(), waiters.splice(0).forEach((w) => w())))),
      isClosed: () => closed,
      sendText: (text) => socket.write(frame(1, Buffer.from(text))),
      next: (timeoutMs = 10_000) =>
        new Promise((res, rej) => {
          const deadline = Date.now() + timeoutMs;
          const check = () => {
            const t = ws.texts.shift();
            if (t !== undefined) return res(JSON.parse(t));
            if (closed) return rej(new Error(`connection closed (${ws.closeCode ?? 'no close frame'} ${ws.closeReason})`));
            if (Date.now() > deadline) return rej(new Error('no reply in time'));
            waiters.push(check);
            setTimeout(() => waiters.includes(check) && (waiters.splice(waiters.indexOf(check), 1), check()), 100);
          };
          check();
        }),
    };
    const start = () =>
      socket.write(
        `GET / HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n${Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('')}\r\n`,
      );
    if (u.protocol === 'wss:') socket.once('secureConnect', start);
    else socket.once('connect', start);
    socket.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        buf = buf.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 101')) {
          socket.destroy();
          reject(new Error(head.split('\r\n')[0]));
          return;
        }
        upgraded = true;
        resolve(ws);
      }
      // Server frames are unmasked.
      for (;;) {
        if (buf.length < 2) break;
        const op = (buf[0] as number) & 15;
        let len = (buf[1] as number) & 127;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) break;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) break;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) break;
        const payload = buf.subarray(off, off + len);
        buf = buf.subarray(off + len);
        if (op === 1) ws.texts.push(payload.toString());
        if (op === 8) {
          ws.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
          ws.closeReason = payload.subarray(2).toString();
        }
        if (op === 9) socket.write(frame(10, Buffer.from(payload)));
      }
      waiters.splice(0).forEach((w) => w());
    });
    socket.once('close', () => {
      if (!upgraded) reject(new Error('closed before the upgrade'));
    });
  });
}

/** VmRSS of a process, bytes. */
export function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) * 1024;
}
