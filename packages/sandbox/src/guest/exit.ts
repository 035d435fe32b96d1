/** How a guest's own exit (preview1 proc_exit, wasi:cli/exit) unwinds out of the guest's code. */
export class GuestExit extends Error {
  constructor(readonly code: number) {
    super(`guest exited with ${code}`);
  }
}

/** A restart in place asked while the guest waited (guest/worker.ts): unwinds its code like an exit, as a stop (143). */
export class GuestRestart extends GuestExit {
  constructor() {
    super(143);
  }
}
