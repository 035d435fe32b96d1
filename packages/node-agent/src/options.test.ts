import { describe, expect, it } from 'vitest';
import { AgentFlagError } from './errors.js';
import { compileAgentOptions, type RawAgentFlags } from './options.js';

const raw = (more: Partial<RawAgentFlags> = {}): RawAgentFlags => ({ listen: '127.0.0.1:0', state: '/tmp/x', trust: [], trustRead: [], allowOrigin: [], metricsListen: 'off', ...more });

describe('--netns', () => {
  it('is veth (each network-granted guest host its own namespace) unless pasta or host is asked for', () => {
    expect(compileAgentOptions(raw(), {}).netns).toBeUndefined();
    expect(compileAgentOptions(raw({ netns: 'veth' }), {}).netns).toBeUndefined();
    expect(compileAgentOptions(raw({ netns: 'host' }), {}).netns).toBe('host');
    expect(compileAgentOptions(raw({ netns: 'pasta' }), {}).netns).toBe('pasta');
  });

  it('refuses another mode, naming the flag and the three choices', () => {
    expect(() => compileAgentOptions(raw({ netns: 'slirp' }), {})).toThrow(AgentFlagError);
    expect(() => compileAgentOptions(raw({ netns: 'slirp' }), {})).toThrow(/--netns slirp: write veth .*, pasta .* or host/);
  });
});

describe('--warm-pool', () => {
  it('is the default (2) unless given; 0 turns the pool off', () => {
    expect(compileAgentOptions(raw(), {}).warmPool).toBeUndefined();
    expect(compileAgentOptions(raw({ warmPool: '0' }), {}).warmPool).toBe(0);
    expect(compileAgentOptions(raw({ warmPool: '8' }), {}).warmPool).toBe(8);
  });

  it('refuses anything but a whole number from 0 to 64, naming the flag', () => {
    for (const bad of ['-1', '1.5', 'two', '', '65', '1e1', ' 2']) {
      expect(() => compileAgentOptions(raw({ warmPool: bad }), {}), bad).toThrow(AgentFlagError);
      expect(() => compileAgentOptions(raw({ warmPool: bad }), {}), bad).toThrow(/^--warm-pool .*: write how many warm guest hosts to keep, a whole number from 0 \(none\) to 64$/);
    }
  });
});

describe('LOWCLOUD_TEST_HEARTBEAT_MS (tests of readers that never read)', () => {
  it('sets the heartbeat; a value that is not a whole number of at least 100 ms is ignored', () => {
    expect(compileAgentOptions(raw(), { LOWCLOUD_TEST_HEARTBEAT_MS: '300000' }).limits?.heartbeatMs).toBe(300_000);
    expect(compileAgentOptions(raw(), { LOWCLOUD_TEST_HEARTBEAT_MS: '5' }).limits).toBeUndefined();
    expect(compileAgentOptions(raw(), { LOWCLOUD_TEST_HEARTBEAT_MS: 'soon' }).limits).toBeUndefined();
  });
});
