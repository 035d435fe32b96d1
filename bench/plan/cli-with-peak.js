// Runs `lowcloud <args>` in this process and prints its peak resident memory to stderr on exit:
// the memory figure of bench/plan is the whole command's, as an operator runs it.
import { writeSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

process.on('exit', () => writeSync(2, `\npeak-rss-kib ${process.resourceUsage().maxRSS}\n`));
process.argv = [process.argv[0], 'lowcloud', ...process.argv.slice(2)];
await import(path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/lowcloud.js'));
