import { Errno, WasiError } from './errno.js';
import { HostFile } from './file.js';
import type { Ledger } from './ledger.js';
import type { Stat } from './stat.js';

/**
 * A read-only config file whose bytes live only in the guest host's memory (an opened sealed
 * secret): no host file holds them, so nothing on disk ever does. It answers every call a HostFile
 * answers; there is no descriptor behind it, and every change is refused as on any config file.
 */
export class MemoryFile extends HostFile {
  private gone = false;

  constructor(
    private readonly bytes: Uint8Array,
    ledger: Ledger,
  ) {
    // Not charged to the disk quota (it is not on the guest's disk): a record of its own, never in the ledger's map.
    super(-1, { key: 'memory', size: bytes.length, opens: 1, linked: true }, ledger, true, false, false, true);
  }

  static stat(bytes: Uint8Array): Stat {
    return { dev: 0n, ino: 0n, type: 'file', nlink: 1n, size: BigInt(bytes.length), atimeNs: 0n, mtimeNs: 0n, ctimeNs: 0n };
  }

  override read(bufs: Uint8Array[], pos: number): number {
    this.live();
    let n = 0;
    for (const b of bufs) {
      if (pos + n >= this.bytes.length) break;
      const part = this.bytes.subarray(pos + n, Math.min(this.bytes.length, pos + n + b.length));
      b.set(part);
      n += part.length;
    }
    return n;
  }

  /** As on a host config file: the flag is accepted, and every write is still refused (EBADF). */
  override setAppend(): void {
    this.live();
  }

  override stat(): Stat {
    this.live();
    return MemoryFile.stat(this.bytes);
  }

  override sync(): void {
    this.live();
  }

  override close(): void {
    this.gone = true;
  }

  private live(): void {
    if (this.gone) throw new WasiError(Errno.BADF, 'the file is closed');
  }
}
