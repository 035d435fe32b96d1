// Runs `lowcloud <args>` in this process and prints its peak resident memory and CPU time to
// stderr on exit: the figures of bench/plan and bench/fleet are the whole command's, as an
// operator runs it.
import { writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.on('exit', () => {
  const u = process.resourceUsage();
  writeSync(2, `\npeak-rss-kib ${u.maxRSS}\ncpu-ms ${Math.round((u.userCPUTime + u.systemCPUTime) / 1000)}\n`);
});
process.argv = [process.argv[0], 'lowcloud', ...process.argv.slice(2)];
await import(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/lowcloud.js'));
