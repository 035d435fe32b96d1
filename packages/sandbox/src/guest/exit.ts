/** How a guest's own exit (preview1 proc_exit, wasi:cli/exit) unwinds out of the guest's code. */
export class GuestExit extends Error {
  constructor(readonly code: number) {
    super(`guest exited with ${code}`);
  }
}
