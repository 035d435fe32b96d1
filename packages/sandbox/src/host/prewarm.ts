import { prewarmDiskProbe } from './capabilities.js';
import { prewarmNodeView, prewarmWall } from './isolation.js';
import { prewarmJspiNode } from './shared-host.js';

/**
 * What the sandbox learns of the machine once per process by running tools (the wall's probe
 * around a Node.js start-up, `ldd` of the binaries the wall binds, which Node.js has JSPI, whether
 * an ext4 image loop-mounts), found
 * without holding the caller's thread: an agent calls this as it starts, so its first starts find
 * the answers known instead of running each tool synchronously (~0.6-1 s of a blocked event loop
 * on a busy 2-core machine, measured in the agent's profile). Never fails: a question it could not
 * answer is asked again, synchronously, when first needed.
 */
export async function prewarmSandbox(): Promise<void> {
  // Neither rejects in practice (a tool that fails to run is an answer); should one, the question is
  // left unanswered here and asked synchronously at the first start, so nothing is lost by settling.
  await Promise.allSettled([prewarmWall(), prewarmJspiNode().then((node) => prewarmNodeView([null, node])), prewarmDiskProbe()]);
}
