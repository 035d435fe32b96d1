import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../errors.js';
import type { FileRead, FileSource } from './file-source.js';
import { parseInfra } from './parse.js';
import { resolveInfra, resolveInfraDigests } from './resolve.js';

const source: FileSource = {
  label: 'test files',
  read: async (p): Promise<FileRead> => (p === 'a.wasm' ? { kind: 'file', bytes: Buffer.from('\0asm\x01\0\0\0a') } : { kind: 'missing', reason: 'no such file' }),
};

describe('a process machine', () => {
  // Names of Object.prototype's members were found on every table of machines: a process on
  // `constructor` was accepted and planned on a machine that does not exist.
  it.each(['constructor', 'toString', '__proto__'])('named %s and not declared is an unknown machine, with its line and column', async (name) => {
    const text = `version: 1\nmachines:\n  m1:\n    agent: local\nprocesses:\n  p1:\n    machine: "${name}"\n    binary: a.wasm\n`;
    for (const resolve of [resolveInfra, resolveInfraDigests]) {
      const err = await resolve(parseInfra(text, 'i.yaml'), source).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(InvalidInputError);
      expect((err as InvalidInputError).diagnostics).toEqual([
        expect.objectContaining({ line: 7, column: 14, path: 'processes.p1.machine', message: `unknown machine "${name}"`, hint: 'declare it under machines, or use one of: m1' }),
      ]);
    }
  });
});

describe('a number JSON cannot write', () => {
  // `.inf` is a YAML number the schema refuses (not finite); the message said "got number null".
  it.each([
    ['.inf', '.inf'],
    ['-.inf', '-.inf'],
    ['.nan', '.nan'],
  ])('%s is named as the file writes it', (written, said) => {
    const text = `version: 1\nmachines:\n  m1:\n    agent: local\n    capacity: { cpu: ${written} }\n`;
    const err = (() => {
      try {
        return parseInfra(text, 'i.yaml');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(InvalidInputError);
    expect((err as InvalidInputError).diagnostics).toEqual([expect.objectContaining({ path: 'machines.m1.capacity.cpu', message: `must be a number, got ${said}` })]);
  });
});
