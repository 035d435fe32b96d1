import { describe, expect, it } from 'vitest';
import { formatSize, parseCpu, parseSize } from './units.js';

describe('parseSize', () => {
  it('reads binary and decimal units', () => {
    expect(parseSize('64MiB')).toBe(64 * 2 ** 20);
    expect(parseSize('1GiB')).toBe(2 ** 30);
    expect(parseSize('500KB')).toBe(500_000);
    expect(parseSize('100B')).toBe(100);
  });
  it('rejects a bare number and says which units to use', () => {
    expect(() => parseSize('64', 'grants.memory')).toThrow('grants.memory: "64" has no unit; write 64MiB, 64KiB or 64B');
  });
  it('rejects an unknown unit', () => {
    expect(() => parseSize('64XB', 'grants.memory')).toThrow('grants.memory: "64XB" is not a size');
  });
  it('round-trips through formatSize', () => {
    expect(formatSize(parseSize('64MiB'))).toBe('64MiB');
  });
});

describe('parseCpu', () => {
  it('reads cores and millicores', () => {
    expect(parseCpu('0.5')).toBe(0.5);
    expect(parseCpu(2)).toBe(2);
    expect(parseCpu('250m')).toBe(0.25);
  });
  it('rejects zero and junk', () => {
    expect(() => parseCpu('0')).toThrow('is not a CPU amount');
    expect(() => parseCpu('fast')).toThrow('is not a CPU amount');
  });
});
