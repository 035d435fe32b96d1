const sleepCell = new Int32Array(new SharedArrayBuffer(4));
/** Block this thread (the guest's own process) without spinning. */
export function sleepSync(ms: number): void {
  if (ms > 0) Atomics.wait(sleepCell, 0, 0, ms);
}
