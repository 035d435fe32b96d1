/**
 * Crash points, for tests only: they let a test stop the agent at an exact point of a call instead
 * of guessing with a timer. Honoured only when LOWCLOUD_TEST_HOOKS=1 is set as well (never set by
 * lowcloud itself), so a stray LOWCLOUD_TEST_CRASH on a real machine does nothing.
 *
 *   LOWCLOUD_TEST_CRASH=<point>:<call-type>[:<n>]   e.g. after-save:start, state-written:replace-config:2
 *
 * On the n-th (default: first) call of that type the agent SIGKILLs itself:
 *   before-save    the call was received; nothing of it is saved, audited or done yet;
 *   state-written  the call is audited and the new desired state is on disk; nothing is acted on yet
 *                  (the old guest still runs);
 *   after-save     the call is saved and acted on (a started guest runs); the reply is not sent.
 */
type Point = 'before-save' | 'state-written' | 'after-save';

const crash = parse(process.env);
let seen = 0;
/** The call being handled (state-changing calls run one at a time), and which one of its type it is. */
let current: { type: string; nth: number } | null = null;

function parse(env: NodeJS.ProcessEnv): { point: Point; type: string; n: number } | null {
  if (env.LOWCLOUD_TEST_HOOKS !== '1' || env.LOWCLOUD_TEST_CRASH === undefined) return null;
  const m = /^(before-save|state-written|after-save):([a-z-]+)(?::(\d+))?$/.exec(env.LOWCLOUD_TEST_CRASH);
  // A test's own mistake (the variable is set only by tests, with LOWCLOUD_TEST_HOOKS=1): plain Error.
  if (m === null) throw new Error(`LOWCLOUD_TEST_CRASH=${env.LOWCLOUD_TEST_CRASH}: write before-save|state-written|after-save:<call-type>[:<n>]`);
  return { point: m[1] as Point, type: m[2] as string, n: m[3] === undefined ? 1 : Number(m[3]) };
}

/** Dies here if this is the point, call type and count the test asked for. */
export function crashPoint(point: Point): void {
  if (crash !== null && current !== null && crash.point === point && crash.type === current.type && crash.n === current.nth) process.kill(process.pid, 'SIGKILL');
}

/** Runs one state-changing call between its crash points (a pass-through without the test flag). */
export async function withCrashPoints<T>(type: string, call: () => Promise<T>): Promise<T> {
  if (crash === null || crash.type !== type) return call();
  current = { type, nth: ++seen };
  try {
    crashPoint('before-save');
    const result = await call();
    crashPoint('after-save');
    return result;
  } finally {
    current = null;
  }
}
