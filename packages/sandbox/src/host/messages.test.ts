import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { decodeLine, encodeLine, Lines, parseHostBoot, parseSharedHostRequest } from '../common/protocol.js';
import { JsonDocuments, parseGuestExit, parseGuestHostMessage, parseSharedHostReply } from './messages.js';
import { VETH_SHELL } from './netns.js';

describe('the host <-> guest-host protocol, parsed closed', () => {
  it('bubblewrap pretty-printed report, then launcher lines, split into documents across chunk borders', () => {
    const docs = new JsonDocuments();
    const stream = '{\n    "child-pid": 4242,\n    "cgroup-namespace": 1\n}\n{"type": "oom"}\n';
    const out = [...stream].flatMap((c) => docs.push(c)).map(parseGuestHostMessage);
    expect(out).toEqual([{ type: 'ready', pid: 4242 }, { type: 'oom' }]);
  });

  it('text outside any document is kept as the reason; a string holding braces does not end a document', () => {
    const docs = new JsonDocuments();
    expect(docs.push('bwrap: Creating new namespace failed\n{"type": "refused", "message": "no } here {"}')).toEqual([{ type: 'refused', message: 'no } here {' }]);
    expect(docs.rest).toBe('bwrap: Creating new namespace failed');
  });

  it('a document past the limit is an error, not unbounded memory', () => {
    const docs = new JsonDocuments(64);
    const out = docs.push(`{"a": "${'x'.repeat(100)}"}`);
    expect(out[0]).toBeInstanceOf(Error);
  });

  it('only well-formed messages are believed', () => {
    for (const bad of [null, 7, 'oom', { type: 'ready', pid: -1 }, { type: 'ready', pid: 1.5 }, { type: 'ready', pid: 9, veth: 'eth0' }, { type: 'ready', pid: 9, veth: 'lcv1; flush ruleset' }, { type: 'ready', pid: 9, veth: 7 }, { 'child-pid': '12' }, { type: 'exit', guest: 'g', exit: { kind: 'exit', code: 300 } }, { type: 'nope' }]) {
      expect(parseGuestHostMessage(bad)).toBeNull();
    }
    expect(parseGuestHostMessage({ type: 'exit', guest: 'g', exit: { kind: 'violation', grant: 'memory', detail: 'x' } })).toEqual({ type: 'exit', guest: 'g', exit: { kind: 'violation', grant: 'memory', detail: 'x' } });
    // The veth wall shell's ready line: the pid and its host interface, as dash prints them.
    const line = execFileSync('/bin/sh', ['-c', `pid=4242; hif=lcv17; ready=""; ${VETH_SHELL.split('\n').find((l) => l.startsWith('ready=", '))}; printf '{"type": "ready", "pid": %s%s}' "$pid" "$ready"`]).toString();
    expect(parseGuestHostMessage(JSON.parse(line))).toEqual({ type: 'ready', pid: 4242, veth: 'lcv17' });
    expect(parseGuestExit({ kind: 'violation', grant: 'bogus', detail: 'x' })).toBeNull();
    expect(parseGuestExit({ kind: 'trap', message: 'm'.repeat(10_000) })).toEqual({ kind: 'trap', message: 'm'.repeat(4096) });
  });

  it('boot options: a wrong field is named', () => {
    const guest = { id: 'g', modulePath: '/m', kind: 'module', argv: ['a'], env: {}, dirs: [], config: [], disk: null, network: { listen: [], connect: [], udp: false }, workerHeapMb: null, stdin: false, stdout: 'inherit', stderr: 'pipe', exitRecord: null };
    expect(parseHostBoot({ type: 'boot', detached: false, guests: [guest] }).guests[0]?.id).toBe('g');
    expect(() => parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, env: { A: 1 } }] })).toThrow('guests[0].env');
    expect(() => parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, stdout: { file: '/l', maxBytes: 0, keep: 1 } }] })).toThrow('guests[0].stdout');
    expect(() => parseHostBoot({ type: 'boot', detached: 'no', guests: [guest] })).toThrow('detached');
    // A config file is a host file or in-memory content (an opened secret), never both or neither.
    expect(parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, config: [{ guest: '/a', host: '/h' }, { guest: '/b', content: 'AA==' }] }] }).guests[0]?.config).toHaveLength(2);
    for (const c of [{ guest: '/a', host: '/h', content: 'AA==' }, { guest: '/a' }]) expect(() => parseHostBoot({ type: 'boot', detached: false, guests: [{ ...guest, config: [c] }] })).toThrow('guests[0].config');
  });
});

describe('the shared guest host channel and its control FIFOs, parsed closed', () => {
  it('a message with bytes survives a line of the FIFO, split anywhere', () => {
    const m = { type: 'out' as const, guest: 'g-1/0', fd: 1 as const, data: new Uint8Array([0, 10, 255]) };
    const lines = new Lines();
    const got = [...encodeLine(m), ...encodeLine({ type: 'live', guests: ['g-1/0'] })].flatMap((c) => lines.push(c)).map((l) => parseSharedHostReply(decodeLine(l)));
    expect(got).toEqual([m, { type: 'live', guests: ['g-1/0'] }]);
  });

  it('hostile replies are not believed; a line cut short by a dead writer costs that line only', () => {
    expect(parseSharedHostReply({ type: 'out', guest: 'x', fd: 3, data: new Uint8Array() })).toBeNull();
    expect(parseSharedHostReply({ type: 'exit', guest: 'x', exit: { kind: 'exit', code: 1 }, status: 999 })).toBeNull();
    expect(parseSharedHostReply({ type: 'usage', guest: 'x', seq: 1, memoryBytes: -1, cpuSeconds: 0 })).toBeNull();
    // JSON reads 1e400 as Infinity: believed, it would reach status, whose reply writes it as null
    // and which the client then refuses whole (one hostile host blinding the operator's status).
    expect(parseSharedHostReply(decodeLine('{"type":"usage","guest":"x","seq":1,"memoryBytes":0,"cpuSeconds":1e400}'))).toBeNull();
    expect(parseSharedHostReply({ type: 'usage', guest: 'x', seq: 1, memoryBytes: 0, cpuSeconds: 0.5 })).toEqual({ type: 'usage', guest: 'x', seq: 1, memoryBytes: 0, cpuSeconds: 0.5 });
    expect(parseSharedHostReply({ type: 'live', guests: [1] })).toBeNull();
    const lines = new Lines(64);
    expect(lines.push('{"type":"hel')).toEqual([]);
    expect(lines.push(`${'x'.repeat(100)}\n{"type":"hello"}\n`)).toEqual(['{"type":"hello"}']);
    expect(() => decodeLine('{"type":"hel')).toThrow();
  });

  it('bytes travel as bytes, a Buffer too (not its toJSON); lines are bounded however they arrive', () => {
    const add = { type: 'add' as const, guest: 'g', digest: 'd', module: Buffer.from([1, 2, 255]) };
    expect((decodeLine(encodeLine(add as never).trim()) as { module: unknown }).module).toEqual(new Uint8Array([1, 2, 255]));
    const lines = new Lines(8);
    // Exactly the cap is kept; one past it is dropped whole, however it is cut; the next line counts.
    expect([...'12345678\n123456789\nok\n'].flatMap((c) => lines.push(c))).toEqual(['12345678', 'ok']);
    expect(lines.push('1234')).toEqual([]);
    expect(lines.push('56789')).toEqual([]);
    expect(lines.push('0\nnext\n')).toEqual(['next']);
    // Several lines in one chunk, empty lines skipped.
    expect(new Lines().push('a\n\nb\nc')).toEqual(['a', 'b']);
  });

  it('requests name what is wrong', () => {
    expect(() => parseSharedHostRequest({ type: 'add', digest: 'd', module: 'not bytes', guest: {} })).toThrow(/module/);
    expect(() => parseSharedHostRequest({ type: 'usage', guest: 'g', seq: -1 })).toThrow(/guest/);
    expect(parseSharedHostRequest({ type: 'hello' })).toEqual({ type: 'hello' });
  });
});
