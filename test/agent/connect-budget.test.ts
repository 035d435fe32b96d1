import net from 'node:net';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { expectServes, useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { waitFor } from '../helpers/guests.js';
import { httpGet } from '../helpers/net.js';

// Issue 17, point 9: new connections are limited per address group at three levels (/64, /56, /48;
// IPv4 /32, /24, /16), by one budget for the whole agent shared fairly between /48s (/16s), and
// the unauthenticated slots are capped per level the same way. Loopback gives a whole IPv4 /8 of
// source addresses (127.x.y.z), so the floods below come from many real prefixes.

const fx = useAgentFixture();
let agent: RunningAgent;
let port = 0;
beforeAll(async () => {
  agent = await fx.start(); // the defaults: --connect-rate 20, --connect-budget 100
  port = Number(new URL(agent.url).port);
});

async function refused(): Promise<number> {
  const text = await httpGet(agent.metricsUrl ?? '');
  return [...text.matchAll(/lowcloud_agent_refused_connections_total\{reason="\w+"\} (\d+)/g)].reduce((n, m) => n + Number(m[1]), 0);
}

/** Connect and close at once, from `addresses` in turn, `parallel` at a time, for at least `ms` (and `least` attempts, within 10 s). */
async function flood(addresses: string[], ms: number, least: number, parallel = 6): Promise<{ attempts: number; seconds: number }> {
  const t0 = Date.now();
  let attempts = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while ((Date.now() - t0 < ms || attempts < least) && Date.now() - t0 < 10_000) {
        const localAddress = addresses[attempts++ % addresses.length] as string;
        await new Promise<void>((resolve) => {
          const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => s.destroy());
          s.on('error', () => undefined);
          s.on('close', () => resolve());
        });
      }
    }),
  );
  return { attempts, seconds: (Date.now() - t0) / 1000 };
}

/** Connections the agent admitted out of a flood: attempts less the refusals /metrics counted, once they settle. */
async function admitted(before: number, attempts: number): Promise<number> {
  let last = -1;
  await waitFor(async () => {
    const now = await refused();
    const settled = now === last;
    last = now;
    return settled;
  }, 10_000, 'refusal count settled');
  return attempts - (last - before);
}

describe('one budget of new connections, shared fairly by address group (issue 17)', () => {
  it('82 addresses of one /24 share 4x one address\'s rate (burst 160, 80/s), not 82x', async () => {
    const addresses = Array.from({ length: 82 }, (_, i) => `127.50.7.${i + 1}`);
    const before = await refused();
    const { attempts, seconds } = await flood(addresses, 2000, 1500);
    const got = await admitted(before, attempts);
    // Per address alone (before): 82 x (40 + 20/s) would admit every one of these.
    expect(attempts).toBeGreaterThan(2 * (160 + 80 * (seconds + 0.5)));
    expect(got).toBeLessThanOrEqual(160 + 80 * (seconds + 0.5));
    expect(got).toBeGreaterThan(0);
    await expectServes(agent, fx.operator);
  });

  it('64 /16s flooding at once: the whole agent admits at most its budget (burst 200, 100/s); an operator on another /16 still gets in', async () => {
    await new Promise((r) => setTimeout(r, 2500)); // the budget refilled after the test before
    const addresses = Array.from({ length: 64 }, (_, i) => `127.${100 + i}.0.1`);
    const before = await refused();
    let operatorIn = false;
    const during = (async () => {
      await new Promise((r) => setTimeout(r, 1000));
      await expectServes(agent, fx.operator);
      operatorIn = true;
    })();
    const { attempts, seconds } = await flood(addresses, 3000, 1500);
    await during;
    const got = await admitted(before, attempts);
    const allowance = 200 + 100 * (seconds + 0.5) + 1;
    // Per group alone (before): 64 /16s x (40 + 20/s) would admit every one of these.
    expect(attempts).toBeGreaterThan(2 * allowance);
    expect(got).toBeLessThanOrEqual(allowance);
    expect(operatorIn).toBe(true);
  });

  it('unauthenticated slots: the addresses of one /24 hold at most 32 (2x one address), so 82 of them cannot hold all 256', async () => {
    await new Promise((r) => setTimeout(r, 2500));
    const socks: net.Socket[] = [];
    onTestFinished(() => socks.forEach((s) => s.destroy()));
    // Two silent connections from each of 82 addresses of 127.60.1.0/24, paced under the /24's rate.
    for (let i = 0; i < 82; i++) {
      for (let k = 0; k < 2; k++) {
        const s = net.connect({ port, host: '127.0.0.1', localAddress: `127.60.1.${i + 1}` });
        s.on('error', () => undefined);
        socks.push(s);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    await new Promise((r) => setTimeout(r, 500));
    const held = socks.filter((s) => !s.destroyed && s.readyState === 'open').length;
    // Before: 16 per address, 256 in all: these 164 were all held.
    expect(held).toBe(32);
    await expectServes(agent, fx.operator); // from 127.0.0.1: another /16
  });
});
