import { describe, expect, it } from 'vitest';
import { addressGroups, ConnectBudget, RATE_TABLE_ENTRIES } from './admission.js';

describe('address groups', () => {
  it('IPv6 /64, /56, /48; IPv4 (and v4-mapped) /32, /24, /16; anything else one unknown group', () => {
    expect(addressGroups('2001:db8:1:2a3:4:5:6:7')).toEqual(['2001:db8:1:2a3::/64', '2001:db8:1:200::/56', '2001:db8:1::/48']);
    expect(addressGroups('::ffff:10.1.2.3')).toEqual(['10.1.2.3/32', '10.1.2.0/24', '10.1.0.0/16']);
    expect(addressGroups(undefined)).toEqual(['unknown/64', 'unknown/56', 'unknown/48']);
  });
});

describe('ConnectBudget', () => {
  it('cycling through 60,000 /48s cannot evade it: the table stays bounded and the agent admits at most its budget', () => {
    let t = 0;
    const b = new ConnectBudget(20, 100, () => t);
    let admitted = 0;
    // 10 attempts a millisecond for 6 s, each from a /48 not seen before.
    let most = 0;
    for (let i = 0; i < 60_000; i++) {
      t = Math.floor(i / 10);
      const hi = (i >> 16) & 0xffff;
      const lo = i & 0xffff;
      if (b.admit(addressGroups(`2001:${hi.toString(16)}:${lo.toString(16)}::1`)) === null) admitted++;
      most = Math.max(most, b.entries);
    }
    expect(most).toBeLessThanOrEqual(3 * RATE_TABLE_ENTRIES);
    expect(admitted).toBeLessThanOrEqual(200 + 100 * 6);
    // Newcomers still get in through the reserve: well over half the budget was used.
    expect(admitted).toBeGreaterThan(100 * 6 * 0.9);
  });

  it('a flooding /48 is held above the reserve; a client of another /48 draws on it', () => {
    let t = 0;
    const b = new ConnectBudget(1000, 100, () => t);
    const flood = addressGroups('2001:db8:1::1');
    for (let i = 0; i < 5000; i++) {
      t = i;
      b.admit(flood);
    }
    expect(b.admit(flood)).toBe('busy');
    expect(b.admit(addressGroups('2001:db8:2::1'))).toBeNull();
  });
});
