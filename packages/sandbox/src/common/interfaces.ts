/** lowcloud's own GPU interface (wit/lowcloud-gpu/gpu.wit); a component needs a gpu grant to import it. */
export const GPU_INTERFACE = 'lowcloud:gpu/gpu';

/**
 * The interfaces a component may import (WASI 0.2's and lowcloud:gpu); anything else is refused at
 * admission. Here, not beside the imports that provide them, so admission (in the agent) loads none
 * of preview2-shim.
 */
export const SUPPORTED_INTERFACES: readonly string[] = [
  'wasi:cli/environment', 'wasi:cli/exit', 'wasi:cli/stdin', 'wasi:cli/stdout', 'wasi:cli/stderr',
  'wasi:cli/terminal-input', 'wasi:cli/terminal-output', 'wasi:cli/terminal-stdin', 'wasi:cli/terminal-stdout', 'wasi:cli/terminal-stderr',
  'wasi:clocks/wall-clock', 'wasi:clocks/monotonic-clock',
  'wasi:filesystem/preopens', 'wasi:filesystem/types',
  'wasi:io/error', 'wasi:io/streams', 'wasi:io/poll',
  'wasi:random/random', 'wasi:random/insecure', 'wasi:random/insecure-seed',
  'wasi:sockets/network', 'wasi:sockets/instance-network', 'wasi:sockets/tcp', 'wasi:sockets/tcp-create-socket',
  'wasi:sockets/udp', 'wasi:sockets/udp-create-socket', 'wasi:sockets/ip-name-lookup',
  GPU_INTERFACE,
];
