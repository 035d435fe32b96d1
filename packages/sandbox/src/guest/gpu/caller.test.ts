import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { GpuStatus, type GpuCall } from './calls.js';
import { gpuCaller, GpuTimeBudgetExceeded } from './caller.js';

describe('gpuCaller', () => {
  const grant = { memoryBytes: 4 * 2 ** 20, submitMs: 20 };

  it('refuses a reply longer than the gpu grant allows before allocating it: nothing reaches the device thread', () => {
    const { port1, port2 } = new MessageChannel();
    try {
      const call = gpuCaller(port1, grant);
      expect(call.maxReplyBytes).toBe(grant.memoryBytes);
      const r = call({ op: 'buffer_map_read', buffer: 1, offset: 0, length: 2 ** 32 - 1 }, 2 ** 32 - 1);
      expect(r).toEqual({ status: GpuStatus.invalid, value: 0, reply: null });
      expect(receiveMessageOnPort(port2)).toBeUndefined();
    } finally {
      port1.close();
      port2.close();
    }
  });

  it('hands a reply within the grant to the device thread, and a timed call past its budget throws the gpu violation', () => {
    const { port1, port2 } = new MessageChannel();
    try {
      const call = gpuCaller(port1, grant);
      expect(() => call({ op: 'buffer_map_read', buffer: 1, offset: 0, length: grant.memoryBytes }, grant.memoryBytes)).toThrow(GpuTimeBudgetExceeded);
      const sent = receiveMessageOnPort(port2)?.message as GpuCall | undefined;
      expect(sent?.call.op).toBe('buffer_map_read');
      expect(sent?.reply?.byteLength).toBe(grant.memoryBytes);
    } finally {
      port1.close();
      port2.close();
    }
  });

  it('keeps room for a name or a message under a tiny grant', () => {
    const { port1, port2 } = new MessageChannel();
    try {
      expect(gpuCaller(port1, { memoryBytes: 16, submitMs: 20 }).maxReplyBytes).toBe(64 * 1024);
    } finally {
      port1.close();
      port2.close();
    }
  });
});
