import { describe, expect, it } from 'vitest';
import { AgentClient } from '@lowcloud/api/client';
import { useAgentFixture } from '../helpers/agent.js';
import { startLatencyProxy } from '../helpers/latency-proxy.js';

/**
 * The client's timeout is the agent's silence, not a call's age. `apply` pipelines up to 64 calls
 * on a connection; on a loaded machine the last of 64 guest starts is answered long after it was
 * sent, while the agent answers one after another. Counted from the send, those calls timed out,
 * the engine reconnected and sent them again into a generation the first ones had moved
 * (STALE_GENERATION: `bench/agent` and `bench/apply` with `process` guests failed so).
 */
const fx = useAgentFixture();

describe('a client whose calls are answered one by one, slowly', () => {
  it('waits for every call while replies keep coming, and still gives up on an agent that goes silent', { timeout: 60_000 }, async () => {
    const agent = await fx.start();
    const proxy = await startLatencyProxy({ target: { host: '127.0.0.1', port: Number(new URL(agent.url).port) }, delayMs: [0, 0] });
    try {
      const timeoutMs = 1000;
      const client = await AgentClient.connect(`ws://127.0.0.1:${proxy.port}`, { pinnedKey: agent.key, signer: fx.operator, timeoutMs });
      try {
        // The size of one reply, unthrottled.
        const before = proxy.stats.bytesFromTarget;
        await client.status();
        const replyBytes = proxy.stats.bytesFromTarget - before;
        expect(replyBytes).toBeGreaterThan(0);
        // Then each reply takes 0.3 s on the link: 8 calls sent at once are answered over 2.4 s,
        // the last ones well past 1 s after they were sent, with a reply every 0.3 s.
        proxy.limitReplies(replyBytes / 0.3);
        const t = performance.now();
        const answered = await Promise.allSettled(Array.from({ length: 8 }, () => client.status()));
        const ms = performance.now() - t;
        expect(answered.filter((r) => r.status === 'rejected').map((r) => String((r as PromiseRejectedResult).reason))).toEqual([]);
        expect(ms).toBeGreaterThan(2 * timeoutMs);
        // Silence: the call fails once nothing came for the timeout.
        proxy.limitReplies(0);
        const s = performance.now();
        await expect(client.status()).rejects.toMatchObject({ code: 'AGENT_UNREACHABLE', message: expect.stringMatching(/no answer to status, and no other reply from the agent, within 1000 ms/) });
        expect(performance.now() - s).toBeGreaterThanOrEqual(timeoutMs - 50);
      } finally {
        client.close();
      }
    } finally {
      await proxy.close();
    }
  });
});
