import { describe, expect, it } from 'vitest';
import { classifyExit, type ExitEvidence } from './exit.js';

const none: ExitEvidence = { violation: null, reported: null, stopRequested: false, status: null };
const memory = { kind: 'violation', grant: 'memory', detail: 'd' } as const;

describe('one exit classifier for spawned and re-attached guests', () => {
  it('a violation comes first, then the guest host\'s word, then a requested stop, then the process status', () => {
    expect(classifyExit({ ...none, violation: memory, reported: { kind: 'exit', code: 0 }, stopRequested: true })).toEqual(memory);
    expect(classifyExit({ ...none, reported: { kind: 'exit', code: 3 }, stopRequested: true })).toEqual({ kind: 'exit', code: 3 });
    expect(classifyExit({ ...none, stopRequested: true, status: { code: null, signal: 'SIGKILL', wrapped: false } })).toEqual({ kind: 'stopped' });
  });

  it('from the status of its own child: a signal, 128 + n through a wrapper, else the code', () => {
    expect(classifyExit({ ...none, status: { code: null, signal: 'SIGKILL', wrapped: false } })).toEqual({ kind: 'signal', signal: 'SIGKILL' });
    expect(classifyExit({ ...none, status: { code: 137, signal: null, wrapped: true } })).toEqual({ kind: 'signal', signal: 'SIGKILL' });
    expect(classifyExit({ ...none, status: { code: 137, signal: null, wrapped: false } })).toEqual({ kind: 'exit', code: 137 });
  });

  it('re-attached (not its child) with nothing said: an unknown signal', () => {
    expect(classifyExit(none)).toEqual({ kind: 'signal', signal: 'unknown (exited while detached)' });
  });
});
