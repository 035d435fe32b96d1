import { Errno, WasiError } from '../core/errno.js';

/**
 * Linux's IOV_MAX: readv/writev refuse more buffers (EINVAL), and so does lowcloud. Without it a
 * guest's call with millions of one-byte iovecs made a view per buffer on the host heap until the
 * guest host ran out of it.
 */
export const IOV_MAX = 1024;

/**
 * Views over the guest's linear memory. memory.grow replaces (detaches) the buffer, so a view is
 * re-made when the buffer changed, and only then (a new DataView per call showed in profiles).
 */
export class GuestMemory {
  memory: WebAssembly.Memory | undefined;
  private buffer: ArrayBuffer | null = null;
  private dv: DataView | null = null;
  private u8: Uint8Array | null = null;

  private current(): ArrayBuffer {
    if (this.memory === undefined) throw new Error('guest memory not bound yet');
    return this.memory.buffer as ArrayBuffer;
  }

  get view(): DataView {
    const b = this.current();
    if (b !== this.buffer || this.dv === null) {
      this.buffer = b;
      this.dv = new DataView(b);
      this.u8 = new Uint8Array(b);
    }
    return this.dv;
  }

  /** All of memory as bytes (for a write of one iovec without a view per call). */
  get all(): Uint8Array {
    if (this.view.buffer !== this.u8?.buffer) throw new Error('guest memory views out of step');
    return this.u8;
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.current(), ptr, len);
  }

  string(ptr: number, len: number): string {
    return Buffer.from(this.current(), ptr, len).toString('utf8');
  }

  private readonly one = { ptr: 0, len: 0 };

  /** The only non-empty buffer of an iovec array, or null when there are more (or none). Reused object. */
  single(ptr: number, count: number): { ptr: number; len: number } | null {
    if (count > IOV_MAX) throw new WasiError(Errno.INVAL, 'more than IOV_MAX iovecs');
    const v = this.view;
    let found = false;
    for (let i = 0; i < count; i++) {
      const len = v.getUint32(ptr + i * 8 + 4, true);
      if (len === 0) continue;
      if (found) return null;
      found = true;
      this.one.ptr = v.getUint32(ptr + i * 8, true);
      this.one.len = len;
    }
    return found ? this.one : null;
  }

  /** The non-empty scatter/gather buffers of an iovec array. */
  iovecs(ptr: number, count: number): Uint8Array[] {
    if (count > IOV_MAX) throw new WasiError(Errno.INVAL, 'more than IOV_MAX iovecs');
    const v = this.view;
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const len = v.getUint32(ptr + i * 8 + 4, true);
      if (len > 0) out.push(this.bytes(v.getUint32(ptr + i * 8, true), len));
    }
    return out;
  }
}
