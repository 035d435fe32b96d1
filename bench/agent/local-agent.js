// A real agent process for a benchmark, on 127.0.0.1:0 with its state under `dir`, trusting
// `dir/ci.pub`; killed when the benchmark exits, whatever happens.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '../..');

export async function startLocalAgent(dir, flags = []) {
  const proc = spawn(process.execPath, [path.join(root, 'bin/lowcloud.js'), 'agent', '--listen', '127.0.0.1:0', '--state', path.join(dir, 'state'), '--trust', path.join(dir, 'ci.pub'), '--insecure-loopback', '--metrics-listen', 'off', ...flags], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.on('exit', () => proc.kill('SIGKILL'));
  const [url, key] = await new Promise((resolve) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+) key (\S+)/.exec(out);
      if (m) resolve([m[1], m[2]]);
    });
  });
  return { proc, url, key };
}
