import { openAdapter } from './gpu-adapter.js';

/**
 * Run as a process of its own by the host (host/grants/gpu.ts): loads Dawn, finds the adapter a
 * guest would get, prints `{"adapter": name}` or `{"unavailable": reason}` as one JSON line, exits.
 * A process, not the host's own thread: Dawn in the agent would stay loaded in it for good.
 */
const opened = await openAdapter();
process.stdout.write(`${JSON.stringify(typeof opened === 'string' ? { unavailable: opened } : { adapter: opened.name })}\n`);
process.exit(0);
