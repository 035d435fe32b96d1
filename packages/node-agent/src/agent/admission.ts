import ipaddr from 'ipaddr.js';

/**
 * The address groups a client's connections count against, narrowest first. One host usually
 * holds an IPv6 /64 whole, a home or office gets a /56 or a /48; an IPv4 address is one host, a
 * /24 and a /16 the nearest blocks one party tends to hold. `rate` and `unauthenticated` multiply
 * the per-address limits (`--connect-rate`, 16 unauthenticated connections) at each level: so the
 * /64s of one /56 (or the addresses of one /24) share 4x one address's rate and 2x its slots.
 */
export const ADDRESS_LEVELS = [
  { ipv6: 64, ipv4: 32, rate: 1, unauthenticated: 1 },
  { ipv6: 56, ipv4: 24, rate: 4, unauthenticated: 2 },
  { ipv6: 48, ipv4: 16, rate: 8, unauthenticated: 4 },
] as const;

/** Entries one level of the rate table holds; past it, a new group counts against its parent's entry. */
export const RATE_TABLE_ENTRIES = 4096;

/** Half-life of a top-level group's recent use of the agent's budget (its fair share is judged on it). */
const USE_HALF_LIFE_MS = 1000;

/** The group keys of an address, one per level (`2001:db8::/64`, `2001:db8::/56`, ... or `10.1.2.3/32`, `10.1.2.0/24`, ...). */
export function addressGroups(address: string | undefined): string[] {
  if (address === undefined || !ipaddr.isValid(address)) return ADDRESS_LEVELS.map((l) => `unknown/${l.ipv6}`);
  const a = ipaddr.process(address);
  return ADDRESS_LEVELS.map((l) => {
    const bits = a.kind() === 'ipv4' ? l.ipv4 : l.ipv6;
    const bytes = a.toByteArray().map((b, i) => (i * 8 >= bits ? 0 : i * 8 + 8 <= bits ? b : b & (0xff << (8 - (bits - i * 8)))));
    return `${ipaddr.fromByteArray(bytes).toString()}/${bits}`;
  });
}

interface Bucket {
  tokens: number;
  at: number;
  /** Top level only: admissions, decayed by USE_HALF_LIFE_MS. */
  used: number;
}

export type BudgetRefusal = 'rate' | 'busy';

/**
 * New connections the agent admits before their TLS handshake (the costly part, ~0.6-2.3 ms of
 * the agent's one thread each). Three limits, all token buckets holding two seconds' worth:
 * - each address group, at every level of ADDRESS_LEVELS, has its own rate;
 * - the whole agent has one budget (`connectsPerSecond`), so no number of groups saturates it;
 * - that budget is shared fairly: half of it is a reserve that only a top-level group (/48, IPv4
 *   /16) that used less than half an even share of the recent admissions (half-life 1 s) may draw
 *   on. Groups that flood keep the bucket at the reserve; a newcomer from elsewhere still gets in.
 * The table is bounded without forgetting anyone who could use it: an entry is dropped only when
 * its bucket is full again (a new entry would be the same); when a level is full of entries that
 * are not, a new group has none of its own at that level and counts against its parent's alone
 * (at the top level, one shared `overflow` entry). Cycling through prefixes so gains nothing.
 */
export class ConnectBudget {
  private readonly levels: Map<string, Bucket>[] = ADDRESS_LEVELS.map(() => new Map());
  private readonly global: Bucket;
  private usedTotal = 0;
  private usedAt: number;
  private sweptAt = -Infinity;

  constructor(
    private readonly perAddress: number,
    private readonly perAgent: number,
    private readonly now: () => number = Date.now,
  ) {
    const t = now();
    this.global = { tokens: 2 * perAgent, at: t, used: 0 };
    this.usedAt = t;
  }

  /** Entries in the table, all levels (for /metrics and the bench). */
  get entries(): number {
    return this.levels.reduce((n, m) => n + m.size, 0);
  }

  /** Take a token for a new connection from `groups` (addressGroups), or say why not. */
  admit(groups: readonly string[]): BudgetRefusal | null {
    const now = this.now();
    const buckets: Bucket[] = [];
    for (let i = 0; i < this.levels.length; i++) {
      const b = this.bucket(i, groups[i] ?? 'unknown', now);
      if (b !== null) buckets.push(b);
    }
    if (buckets.some((b) => b.tokens < 1)) return 'rate';
    this.refill(this.global, this.perAgent, now);
    const top = this.levels.length - 1;
    // The top level always has an entry (its own or `overflow`), refilled and decayed just now.
    const topBucket = buckets.at(-1) as Bucket;
    this.usedTotal *= 2 ** (-(now - this.usedAt) / USE_HALF_LIFE_MS);
    this.usedAt = now;
    const used = topBucket.used;
    const active = Math.max(1, this.levels[top]?.size ?? 1);
    // Half an even share: a group among equals that flood is over it, a newcomer is not.
    const over = used > 0 && used >= this.usedTotal / (2 * active);
    if (this.global.tokens < 1 + (over ? this.perAgent : 0)) return 'busy';
    this.global.tokens -= 1;
    for (const b of buckets) b.tokens -= 1;
    topBucket.used += 1;
    this.usedTotal += 1;
    return null;
  }

  /** The group's bucket at a level, refilled; created if there is room; null: none (its parent's counts). */
  private bucket(level: number, key: string, now: number): Bucket | null {
    const map = this.levels[level] as Map<string, Bucket>;
    const rate = this.perAddress * (ADDRESS_LEVELS[level]?.rate ?? 1);
    let b = map.get(key);
    if (b === undefined && map.size >= RATE_TABLE_ENTRIES) this.sweep(now);
    if (b === undefined && map.size >= RATE_TABLE_ENTRIES) {
      if (level < this.levels.length - 1) return null;
      key = 'overflow';
      b = map.get(key);
    }
    if (b === undefined) {
      b = { tokens: 2 * rate, at: now, used: 0 };
      map.set(key, b);
    }
    this.refill(b, rate, now);
    return b;
  }

  private refill(b: Bucket, rate: number, now: number): void {
    b.tokens = Math.min(2 * rate, b.tokens + ((now - b.at) / 1000) * rate);
    if (b.used > 0) b.used *= 2 ** (-(now - b.at) / USE_HALF_LIFE_MS);
    b.at = now;
  }

  /** Drop the entries a new one would equal (bucket full, little recent use); at most once a second when it frees little. */
  private sweep(now: number): void {
    if (now - this.sweptAt < 1000) return;
    let freed = 0;
    this.levels.forEach((map, i) => {
      const rate = this.perAddress * (ADDRESS_LEVELS[i]?.rate ?? 1);
      for (const [k, b] of map) {
        this.refill(b, rate, now);
        if (b.tokens >= 2 * rate && b.used < 0.05) {
          map.delete(k);
          freed++;
        }
      }
    });
    this.sweptAt = freed >= RATE_TABLE_ENTRIES / 4 ? -Infinity : now;
  }
}
