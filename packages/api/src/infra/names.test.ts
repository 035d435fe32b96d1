import { describe, expect, it } from 'vitest';
import { formatConnectTarget, parseConnectTarget } from '../grants/network.js';
import { hostPort, machineAddress } from './names.js';

describe('machine addresses and resolved process targets', () => {
  it('a machine is reached at address:, else its agent host, and a local machine at 127.0.0.1', () => {
    expect(machineAddress({ agent: 'local' })).toBe('127.0.0.1');
    expect(machineAddress({ agent: 'wss://10.0.0.5:7443' })).toBe('10.0.0.5');
    expect(machineAddress({ agent: 'wss://[FD00:0::5]:7443' })).toBe('fd00::5');
    expect(machineAddress({ agent: 'wss://EU-1.example.com:7443' })).toBe('eu-1.example.com');
    expect(machineAddress({ agent: 'ws://localhost:7443' })).toBe('127.0.0.1');
    expect(machineAddress({ agent: 'local', address: '10.0.0.9' })).toBe('10.0.0.9');
    expect(hostPort('fd00::5', 80)).toBe('[fd00::5]:80');
  });

  it('name@address:port parses to a process target and is written back in one spelling', () => {
    expect(parseConnectTarget('kv-a@127.0.0.1:7101')).toEqual({ kind: 'process', name: 'kv-a', port: 7101, address: '127.0.0.1' });
    expect(formatConnectTarget(parseConnectTarget('kv-a@[FD00:0::7]:7103'))).toBe('kv-a@[fd00::7]:7103');
    expect(formatConnectTarget(parseConnectTarget('kv-a@EU-1.Example.com:1'))).toBe('kv-a@eu-1.example.com:1');
    expect(() => parseConnectTarget('KV A@127.0.0.1:1')).toThrow('is not a process name');
    expect(() => parseConnectTarget('kv-a@10.0.0.0/8:1')).toThrow('a resolved process target is name@address:port');
  });
});
