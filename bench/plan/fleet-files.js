// The infra files bench/plan plans: N processes on N/10 machines, block style like a hand-kept
// file, with a share of processes changed in each way a plan knows (config, grants, binary, move).
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

/** Writes the binaries and config files the infra files reference into `dir`. */
export function writeBlobs(dir) {
  mkdirSync(path.join(dir, 'bin'), { recursive: true });
  mkdirSync(path.join(dir, 'config'), { recursive: true });
  for (let i = 0; i < 10; i++) writeFileSync(path.join(dir, 'bin', `app${i}.wasm`), Buffer.concat([Buffer.from('\0asm\x01\0\0\0'), Buffer.alloc(64 * 1024, i)]));
  for (let i = 0; i < 20; i++) writeFileSync(path.join(dir, 'config', `c${i}.toml`), `setting = ${i}\n`);
}

/** The processes to change: every 20th (5%). */
export function changedSet(processes, share = 0.05) {
  const changed = new Set();
  for (let p = 0; p < processes; p += Math.round(1 / share)) changed.add(p);
  return changed;
}

/**
 * The text of one infra file of `processes` processes on `processes / 10` machines. `style`:
 * `block` (every mapping and list a block, as a hand-kept file of one key a line) or `flow` (the
 * examples' style: capacity, env, config and grants as one-line flow mappings, args a flow list).
 */
export function infraText(processes, changed, style = 'block') {
  const flow = style === 'flow';
  const machines = Math.max(1, Math.round(processes / 10));
  const lines = ['version: 1', 'machines:'];
  for (let m = 0; m < machines; m++) {
    // Each machine its own address: listen ports are unique per address, and local machines share 127.0.0.1.
    lines.push(`  m${m}:`, '    agent: local', `    address: 10.${(m >> 16) & 255}.${(m >> 8) & 255}.${m & 255}`, `    region: r${m % 7}`);
    lines.push(...(flow ? ['    capacity: { cpu: 16, memory: 64GiB, disk: 1TiB }'] : ['    capacity:', '      cpu: 16', '      memory: 64GiB', '      disk: 1TiB']));
  }
  lines.push('processes:');
  for (let p = 0; p < processes; p++) {
    const c = changed.has(p);
    const kind = Math.floor(p / 20) % 4;
    const machine = c && kind === 3 ? (p + 1) % machines : p % machines;
    const cfg = c && kind === 0 ? (p + 1) % 20 : p % 20;
    const mem = c && kind === 1 ? 128 : 64;
    const bin = c && kind === 2 ? (p + 1) % 10 : p % 10;
    const listen = 1024 + Math.floor(p / machines) * 2 + (p % 2);
    lines.push(`  p${p}:`, `    machine: m${machine}`, `    binary: bin/app${bin}.wasm`);
    if (flow) {
      lines.push(
        `    args: [--id, "${p}"]`,
        `    env: { LOG: info, REPLICA: "${p % 3}" }`,
        `    config: { /etc/app.toml: config/c${cfg}.toml }`,
        `    grants: { cpu: 0.1, memory: ${mem}MiB, disk: 1GiB, network: { listen: [${listen}], connect: ["db.internal:5432"] } }`,
      );
    } else {
      lines.push(
        '    args:',
        '      - --id',
        `      - "${p}"`,
        '    env:',
        '      LOG: info',
        `      REPLICA: "${p % 3}"`,
        '    config:',
        `      /etc/app.toml: config/c${cfg}.toml`,
        '    grants:',
        '      cpu: 0.1',
        `      memory: ${mem}MiB`,
        '      disk: 1GiB',
        '      network:',
        `        listen: [${listen}]`,
        '        connect: ["db.internal:5432"]',
      );
    }
    lines.push('    restart: on-failure');
  }
  return `${lines.join('\n')}\n`;
}
