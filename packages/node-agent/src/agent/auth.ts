import { ErrorCode, requiredRole, verifyRequest, type Request, type RequestAuth, type Role } from '@lowcloud/api';
import { CallAuthError } from '../errors.js';

/** How far a request's timestamp may be from the agent's clock. */
export const MAX_SKEW_MS = 5 * 60_000;

/**
 * Checks a request: signed by a trusted key whose role allows the call, over this agent, recent,
 * never seen before. `checkGeneration` adds, for calls that change desired state, that they were
 * made against the current generation (checked where calls are serialized).
 */
export class RequestAuthenticator {
  /** nonce -> timestamp; a nonce older than the skew window is rejected as expired anyway. */
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(
    private readonly agent: string,
    /** key -> role; `write` implies `read`. */
    private readonly trusted: ReadonlyMap<string, Role>,
    private readonly now: () => number = Date.now,
  ) {}

  check(req: Exclude<Request, { type: 'hello' }>): { key: string; role: Role; auth: RequestAuth } {
    const needed = requiredRole(req.type);
    // Programmer error: the connection answers hello itself and never hands it here.
    if (needed === null) throw new Error(`${req.type} is not a signed call`);
    const auth = req.auth;
    if (auth === undefined) throw new CallAuthError(ErrorCode.UNAUTHENTICATED, `${req.type} must be signed by a trusted key (every call but hello is)`);
    const role = this.trusted.get(auth.key);
    if (role === undefined) throw new CallAuthError(ErrorCode.UNKNOWN_KEY, `key ${auth.key} is not trusted by this agent (add it with --trust, or --trust-read for reads only)`);
    if (!verifyRequest(req, this.agent, auth)) throw new CallAuthError(ErrorCode.BAD_SIGNATURE, `the signature of ${req.type} does not verify (tampered, or signed for another agent)`);
    if (needed === 'write' && role !== 'write') {
      throw new CallAuthError(ErrorCode.FORBIDDEN, `key ${auth.key} may only read on this agent (--trust-read); ${req.type} needs a key given with --trust`);
    }
    const now = this.now();
    if (Math.abs(now - auth.timestamp) > MAX_SKEW_MS) {
      throw new CallAuthError(ErrorCode.EXPIRED, `${req.type} is timestamped ${new Date(auth.timestamp).toISOString()}, more than 5 minutes from the agent's clock`);
    }
    if (now - this.lastSweep > 10_000) {
      this.lastSweep = now;
      for (const [n, t] of this.seen) if (Math.abs(now - t) > MAX_SKEW_MS) this.seen.delete(n);
    }
    if (this.seen.has(auth.nonce)) throw new CallAuthError(ErrorCode.REPLAYED, `${req.type} was already received (nonce ${auth.nonce.slice(0, 8)}...)`);
    this.seen.set(auth.nonce, auth.timestamp);
    return { key: auth.key, role, auth };
  }

  /** A call that changes desired state must be made against the generation it would move. */
  static checkGeneration(req: Request, auth: RequestAuth, generation: number): void {
    if (req.type === 'put-blob' || requiredRole(req.type) !== 'write') return;
    if (auth.generation !== generation) {
      throw new CallAuthError(ErrorCode.STALE_GENERATION, `${req.type} was made against generation ${auth.generation}, the agent is at ${generation}; re-read status and retry`, {
        details: { expected: generation, got: auth.generation },
      });
    }
  }
}
