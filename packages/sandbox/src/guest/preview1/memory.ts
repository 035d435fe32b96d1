/**
 * Views over the guest's linear memory. memory.grow replaces (detaches) the buffer, so a view is
 * re-made when the buffer changed, and only then (a new DataView per call showed in profiles).
 */
export class GuestMemory {
  memory: WebAssembly.Memory | undefined;
  private buffer: ArrayBuffer | null = null;
  private dv: DataView | null = null;

  private current(): ArrayBuffer {
    if (this.memory === undefined) throw new Error('guest memory not bound yet');
    return this.memory.buffer as ArrayBuffer;
  }

  get view(): DataView {
    const b = this.current();
    if (b !== this.buffer || this.dv === null) {
      this.buffer = b;
      this.dv = new DataView(b);
    }
    return this.dv;
  }

  bytes(ptr: number, len: number): Uint8Array {
    return new Uint8Array(this.current(), ptr, len);
  }

  string(ptr: number, len: number): string {
    return Buffer.from(this.current(), ptr, len).toString('utf8');
  }

  /** The non-empty scatter/gather buffers of an iovec array. */
  iovecs(ptr: number, count: number): Uint8Array[] {
    const v = this.view;
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      const len = v.getUint32(ptr + i * 8 + 4, true);
      if (len > 0) out.push(this.bytes(v.getUint32(ptr + i * 8, true), len));
    }
    return out;
  }
}
