import { describe, expect, it } from 'vitest';
import { diskText } from './commands.js';

const usage = (diskMeasuredAt: string | null, diskBytes = 2048) => ({ cpuSeconds: 0, memoryBytes: 0, diskBytes, diskMeasuredAt, diskMeasuring: false });

describe('status text: the disk figure', () => {
  const now = Date.parse('2026-12-02T10:00:00Z');
  it('carries the age of the agent walk it comes from', () => {
    expect(diskText(usage('2026-12-02T09:59:48Z'), now)).toBe(' disk 2KiB (12s ago)');
    expect(diskText(usage('2026-12-02T09:55:00Z'), now)).toBe(' disk 2KiB (5m ago)');
  });
  it('is left out until a walk measured it, or when the time cannot be read', () => {
    expect(diskText(usage(null, 0), now)).toBe('');
    expect(diskText(usage('yesterday-ish'), now)).toBe('');
  });
});
