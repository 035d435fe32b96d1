import { describe, expect, it } from 'vitest';
import { LineReporter } from './progress.js';

describe('LineReporter', () => {
  it('writes one timestamped line per step, naming machine, call and process; the lines of one turn as one write', async () => {
    const writes: string[] = [];
    const r = new LineReporter({ write: (s: string) => writes.push(s) }, () => new Date('2026-01-02T03:04:05.000Z'));
    r.event({ type: 'machine-start', machine: 'eu-1', total: 2 });
    r.event({ type: 'call-done', machine: 'eu-1', call: 'start', process: 'kv', ok: true, ms: 1234 });
    r.event({ type: 'call-done', machine: 'eu-1', call: 'stop', process: 'old', ok: false, ms: 12, error: 'agent unreachable' });
    expect(writes).toEqual([]);
    await new Promise((resolve) => setImmediate(resolve));
    expect(writes).toEqual([
      '2026-01-02T03:04:05.000Z eu-1: 2 call(s) to make\n2026-01-02T03:04:05.000Z eu-1: start kv ok (1.2s)\n2026-01-02T03:04:05.000Z eu-1: stop old FAILED (12ms): agent unreachable\n',
    ]);
    // What is left when the apply ends is written by close, at once.
    r.event({ type: 'call-done', machine: 'eu-1', call: 'stop', process: 'gone', ok: true, skipped: true, ms: 0 });
    r.close();
    expect(writes[1]).toBe('2026-01-02T03:04:05.000Z eu-1: stop gone already done, skipped\n');
    expect(writes).toHaveLength(2);
  });
});
