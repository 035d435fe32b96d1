/**
 * Crash points, for tests only: they let a test stop the agent at an exact point of a call instead
 * of guessing with a timer. Honoured only when LOWCLOUD_TEST_HOOKS=1 is set as well (never set by
 * lowcloud itself), so a stray LOWCLOUD_TEST_CRASH on a real machine does nothing.
 *
 *   LOWCLOUD_TEST_CRASH=<point>:<call-type>[:<n>]   e.g. after-save:start, state-written:replace-config:2
 *
 * On the n-th (default: first) call of that type the agent SIGKILLs itself (calls committed as one
 * group pass each point together: the group's other calls are where that call is):
 *   before-save    the call was received; nothing of it is saved, audited or done yet;
 *   state-written  the new desired state is on disk; nothing is acted on or audited yet
 *                  (the old guest still runs);
 *   after-save     the call is saved and acted on (a started guest runs); the reply is not sent.
 *
 *   LOWCLOUD_TEST_SLOW_ACT=<call-type>:<ms>   e.g. start:1500
 *
 * Every act of a call of that type (the guest started, step 3 of a group) waits that long first: a
 * slow start, so a test can hold calls in the agent's queue behind it deterministically.
 */
type Point = 'before-save' | 'state-written' | 'after-save';

const crash = parse(process.env);
const slow = parseSlow(process.env);
let seen = 0;

function parse(env: NodeJS.ProcessEnv): { point: Point; type: string; n: number } | null {
  if (env.LOWCLOUD_TEST_HOOKS !== '1' || env.LOWCLOUD_TEST_CRASH === undefined) return null;
  const m = /^(before-save|state-written|after-save):([a-z-]+)(?::(\d+))?$/.exec(env.LOWCLOUD_TEST_CRASH);
  // A test's own mistake (the variable is set only by tests, with LOWCLOUD_TEST_HOOKS=1): plain Error.
  if (m === null) throw new Error(`LOWCLOUD_TEST_CRASH=${env.LOWCLOUD_TEST_CRASH}: write before-save|state-written|after-save:<call-type>[:<n>]`);
  return { point: m[1] as Point, type: m[2] as string, n: m[3] === undefined ? 1 : Number(m[3]) };
}

function parseSlow(env: NodeJS.ProcessEnv): { type: string; ms: number } | null {
  if (env.LOWCLOUD_TEST_HOOKS !== '1' || env.LOWCLOUD_TEST_SLOW_ACT === undefined) return null;
  const m = /^([a-z-]+):(\d+)$/.exec(env.LOWCLOUD_TEST_SLOW_ACT);
  if (m === null) throw new Error(`LOWCLOUD_TEST_SLOW_ACT=${env.LOWCLOUD_TEST_SLOW_ACT}: write <call-type>:<ms>`);
  return { type: m[1] as string, ms: Number(m[2]) };
}

/** Resolves at once, or after the delay a test asked for before acting on a call of this type. */
export function slowAct(type: string): Promise<void> {
  if (slow === null || slow.type !== type) return Promise.resolve();
  return new Promise((r) => setTimeout(r, slow.ms));
}

/** Which call of its type a received call is (null: no crash asked for that type). Taken once per call, in arrival order. */
export type CrashTicket = { nth: number } | null;

export function crashTicket(type: string): CrashTicket {
  if (crash === null || crash.type !== type) return null;
  return { nth: ++seen };
}

/** Dies here if this is the point and the call (its ticket) the test asked for. */
export function crashPoint(point: Point, ticket: CrashTicket): void {
  if (crash !== null && ticket !== null && crash.point === point && crash.n === ticket.nth) process.kill(process.pid, 'SIGKILL');
}
