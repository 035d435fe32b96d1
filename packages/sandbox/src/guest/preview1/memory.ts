/** Views over the guest's linear memory; re-made per call because memory.grow detaches buffers. */
export class GuestMemory {
  memory: WebAssembly.Memory | undefined;

  get view(): DataView {
    if (this.memory === undefined) throw new Error('guest memory not bound yet');
    return new DataView(this.memory.buffer);
  }

  bytes(ptr: number, len: number): Uint8Array {
    if (this.memory === undefined) throw new Error('guest memory not bound yet');
    return new Uint8Array(this.memory.buffer, ptr, len);
  }

  string(ptr: number, len: number): string {
    return Buffer.from(this.bytes(ptr, len)).toString('utf8');
  }

  /** The scatter/gather buffers of an iovec array. */
  iovecs(ptr: number, count: number): Uint8Array[] {
    const v = this.view;
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) out.push(this.bytes(v.getUint32(ptr + i * 8, true), v.getUint32(ptr + i * 8 + 4, true)));
    return out;
  }
}
