import { describe, expect, it } from 'vitest';
import { AgentFlagError } from './errors.js';
import { compileAgentOptions, type RawAgentFlags } from './options.js';

const raw = (more: Partial<RawAgentFlags> = {}): RawAgentFlags => ({ listen: '127.0.0.1:0', state: '/tmp/x', trust: [], trustRead: [], allowOrigin: [], metricsListen: 'off', ...more });

describe('--netns', () => {
  it('is the host namespace unless pasta is asked for', () => {
    expect(compileAgentOptions(raw(), {}).netns).toBeUndefined();
    expect(compileAgentOptions(raw({ netns: 'host' }), {}).netns).toBeUndefined();
    expect(compileAgentOptions(raw({ netns: 'pasta' }), {}).netns).toBe('pasta');
  });

  it('refuses another mode, naming the flag and both choices', () => {
    expect(() => compileAgentOptions(raw({ netns: 'veth' }), {})).toThrow(AgentFlagError);
    expect(() => compileAgentOptions(raw({ netns: 'veth' }), {})).toThrow(/--netns veth: write host .* or pasta/);
  });
});
