import { ErrorCode, LowcloudError, MUTATING, verifyRequest, type Request, type RequestAuth } from '@lowcloud/api';

/** How far a request's timestamp may be from the agent's clock. */
export const MAX_SKEW_MS = 5 * 60_000;

/**
 * Checks a mutating request: signed by a trusted key, over this agent, recent, never seen before,
 * and (for calls that change desired state) made against the current generation.
 */
export class RequestAuthenticator {
  /** nonce -> timestamp; a nonce older than the skew window is rejected as expired anyway. */
  private readonly seen = new Map<string, number>();

  constructor(
    private readonly agent: string,
    private readonly trusted: ReadonlySet<string>,
    private readonly now: () => number = Date.now,
  ) {}

  check(req: Request, generation: number): RequestAuth {
    if (!MUTATING.includes(req.type)) throw new Error(`${req.type} is not a mutating call`);
    const auth = (req as { auth?: RequestAuth }).auth;
    if (auth === undefined) throw new LowcloudError(ErrorCode.UNAUTHENTICATED, `${req.type} must be signed by a trusted key`);
    if (!this.trusted.has(auth.key)) throw new LowcloudError(ErrorCode.UNKNOWN_KEY, `key ${auth.key} is not trusted by this agent (add it with --trust)`);
    if (!verifyRequest(req, this.agent, auth)) throw new LowcloudError(ErrorCode.BAD_SIGNATURE, `the signature of ${req.type} does not verify (tampered, or signed for another agent)`);
    const now = this.now();
    if (Math.abs(now - auth.timestamp) > MAX_SKEW_MS) {
      throw new LowcloudError(ErrorCode.EXPIRED, `${req.type} is timestamped ${new Date(auth.timestamp).toISOString()}, more than 5 minutes from the agent's clock`);
    }
    for (const [n, t] of this.seen) if (now - t > 2 * MAX_SKEW_MS) this.seen.delete(n);
    if (this.seen.has(auth.nonce)) throw new LowcloudError(ErrorCode.REPLAYED, `${req.type} was already received (nonce ${auth.nonce.slice(0, 8)}...)`);
    this.seen.set(auth.nonce, auth.timestamp);
    if (req.type !== 'put-blob' && auth.generation !== generation) {
      throw new LowcloudError(ErrorCode.STALE_GENERATION, `${req.type} was made against generation ${auth.generation}, the agent is at ${generation}; re-read status and retry`, {
        details: { expected: generation, got: auth.generation },
      });
    }
    return auth;
  }
}
