import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { appendWhole, restorePrevious, writeAll, writeFileAtomic } from './durable-file.js';

// A descriptor that accepts only part of the data, on any Linux machine and without root: a file
// size limit (RLIMIT_FSIZE, set on this test process with prlimit). write(2) past it writes what
// fits and returns that short count; the next write fails with EFBIG (Node.js ignores SIGXFSZ).
// That is exactly what a nearly full filesystem does (a short count, then ENOSPC).
const LIMIT = 64 * 1024;
let dir: string;

function limitFileSize(bytes: number | 'unlimited'): void {
  execFileSync('prlimit', ['--pid', String(process.pid), `--fsize=${bytes}:`]);
}

beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'lowcloud-durable-'));
});
afterEach(() => limitFileSize('unlimited'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const bytes = (n: number, fill: number) => Buffer.alloc(n, fill);

describe('writes are complete or an error', () => {
  it('the descriptor really accepts only part: a plain fs.writeSync returns a short count and says nothing', () => {
    const file = path.join(dir, 'plain');
    const fd = fs.openSync(file, 'w');
    limitFileSize(LIMIT);
    try {
      expect(fs.writeSync(fd, bytes(LIMIT + 5000, 1))).toBe(LIMIT);
    } finally {
      fs.closeSync(fd);
    }
  });

  it('writeAll goes on after a short write and throws the error that stopped it', () => {
    const file = path.join(dir, 'all');
    const fd = fs.openSync(file, 'w');
    limitFileSize(LIMIT);
    try {
      expect(() => writeAll(fd, bytes(LIMIT + 5000, 1), 0)).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    } finally {
      fs.closeSync(fd);
    }
    limitFileSize('unlimited');
    // And when everything fits, everything is written, from the position asked.
    const fd2 = fs.openSync(file, 'w');
    writeAll(fd2, 'hello', 0);
    writeAll(fd2, ' world', 5);
    fs.closeSync(fd2);
    expect(fs.readFileSync(file, 'utf8')).toBe('hello world');
  });

  it('writeFileAtomic: a write that does not fit leaves the old file untouched and no temporary file', () => {
    const file = path.join(dir, 'state.json');
    fs.writeFileSync(file, 'old contents');
    limitFileSize(LIMIT);
    expect(() => writeFileAtomic(file, bytes(LIMIT + 1, 2), { keepPrevious: true })).toThrow(expect.objectContaining({ code: 'EFBIG' }));
    limitFileSize('unlimited');
    expect(fs.readFileSync(file, 'utf8')).toBe('old contents');
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('state.json'))).toEqual(['state.json']);
  });

  it('writeFileAtomic with keepPrevious keeps the generation before, and restorePrevious puts it back', () => {
    const file = path.join(dir, 'gen.json');
    writeFileAtomic(file, 'one', { keepPrevious: true });
    expect(fs.existsSync(`${file}.prev`)).toBe(false);
    writeFileAtomic(file, 'two', { keepPrevious: true });
    writeFileAtomic(file, 'three', { keepPrevious: true });
    expect([fs.readFileSync(file, 'utf8'), fs.readFileSync(`${file}.prev`, 'utf8')]).toEqual(['three', 'two']);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    restorePrevious(file);
    expect(fs.readFileSync(file, 'utf8')).toBe('two');
    expect(fs.existsSync(`${file}.prev`)).toBe(false);
    // The first generation had nothing before it: undoing it removes the file.
    const first = path.join(dir, 'first.json');
    writeFileAtomic(first, 'one', { keepPrevious: true });
    restorePrevious(first);
    expect(fs.existsSync(first)).toBe(false);
  });

  it('appendWhole: an append that does not fit is cut off again, so the file ends with its last whole line', () => {
    const file = path.join(dir, 'audit.log');
    const line = `${'x'.repeat(7999)}\n`;
    const fd = fs.openSync(file, 'a');
    try {
      while (fs.fstatSync(fd).size + line.length <= LIMIT) appendWhole(fd, line);
      const before = fs.readFileSync(file);
      limitFileSize(LIMIT);
      expect(() => appendWhole(fd, line)).toThrow(expect.objectContaining({ code: 'EFBIG' }));
      expect(fs.readFileSync(file)).toEqual(before);
      expect(before.toString().endsWith('\n')).toBe(true);
      limitFileSize('unlimited');
      expect(appendWhole(fd, line)).toBe(before.length + line.length);
    } finally {
      fs.closeSync(fd);
    }
  });
});
