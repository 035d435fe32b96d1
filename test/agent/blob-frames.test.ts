import { readFileSync } from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { BLOB_CHUNK_BYTES, BLOB_FRAME_MAX_BYTES, encodeBlobFrame, sha256Hex, signRequest } from '@lowcloud/api';
import { useAgentFixture, type RunningAgent } from '../helpers/agent.js';
import { frame, rawConnect } from '../helpers/raw-ws.js';

// put-blob chunks as binary frames: raw bytes after a signed JSON header, several in flight.
const fx = useAgentFixture();
let agent: RunningAgent;
beforeAll(async () => {
  agent = await fx.start();
});

type PutBlob = { type: 'put-blob'; id: string; digest: string; size: number; offset: number; chunk: { bytes: number; sha256: string } };
const header = (id: string, digest: string, size: number, offset: number, payload: Buffer): PutBlob => ({ type: 'put-blob', id, digest, size, offset, chunk: { bytes: payload.length, sha256: sha256Hex(payload) } });
const signed = <T extends object>(req: T) => ({ ...req, auth: signRequest(req, agent.key, 0, fx.operator) });

describe('put-blob in binary frames', () => {
  it('a blob of several chunks, sent with a window in flight, is stored whole; an interrupted upload resumes at its offset', async () => {
    const c = await fx.connect(agent);
    const big = Buffer.alloc(2 * BLOB_CHUNK_BYTES + 12344);
    for (let i = 0; i < big.length; i += 4) big.writeUInt32LE(i, i);
    const digest = sha256Hex(big);
    // The first chunk alone, as an earlier attempt that stopped.
    const first = big.subarray(0, BLOB_CHUNK_BYTES);
    expect(await c.call(header('one', digest, big.length, 0, first), first)).toEqual({ complete: false });
    expect(await c.blobStatus([digest])).toEqual({ present: [], partial: { [digest]: BLOB_CHUNK_BYTES } });
    await c.putBlob(digest, big);
    expect(await c.blobStatus([digest])).toEqual({ present: [digest], partial: {} });
    expect(sha256Hex(readFileSync(path.join(fx.stateDir, 'blobs', digest)))).toBe(digest);
    c.close();
  });

  it('a blob whose bytes do not hash to its name is refused after the last chunk and nothing is stored', async () => {
    const c = await fx.connect(agent);
    const bytes = Buffer.alloc(BLOB_CHUNK_BYTES + 10, 3);
    const claimed = sha256Hex('something else');
    await expect(c.putBlob(claimed, bytes)).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await c.blobStatus([claimed])).toEqual({ present: [], partial: {} });
    c.close();
  });

  it('each malformed binary frame gets BAD_MESSAGE naming what is wrong, stores nothing, and the connection keeps serving', async () => {
    const ws = await rawConnect(agent.url);
    onTestFinished(() => void ws.socket.destroy());
    const sendBinary = (b: Buffer) => {
      ws.socket.write(frame(2, b));
      return ws.next();
    };
    ws.sendText(JSON.stringify(signed({ type: 'authenticate', id: 'a' })));
    expect((await ws.next()).type).toBe('result'); // before that, no frame may pass 8 KiB
    const bytes = Buffer.from('chunk bytes');
    const digest = sha256Hex(bytes);
    const good = signed(header('g', digest, bytes.length, 0, bytes));
    const withLength = (n: number, rest: Buffer) => Buffer.concat([Buffer.from([n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255]), rest]);
    const cases: [string, Buffer, string][] = [
      ['too short', Buffer.from([0, 0]), 'shorter than its 4-byte header length'],
      ['header past the frame', withLength(100, Buffer.from('{}')), 'past the frame'],
      ['header not JSON', withLength(3, Buffer.from('{{{rest')), 'not JSON'],
      ['not a put-blob', withLength(Buffer.byteLength('{"type":"status","id":"s"}'), Buffer.from('{"type":"status","id":"s"}')), 'only put-blob'],
      ['fewer bytes than announced', encodeBlobFrame(good as never, bytes.subarray(1)), 'announces 11 bytes, 10 follow'],
      ['bytes changed on the way', encodeBlobFrame(good as never, Buffer.from('chunk BYTES')), 'do not hash'],
      ['larger than one chunk', Buffer.alloc(BLOB_FRAME_MAX_BYTES + 1), 'more than'],
    ];
    for (const [what, b, says] of cases) {
      const reply = await sendBinary(b);
      expect(reply.error?.code, what).toBe('BAD_MESSAGE');
      expect(reply.error?.message, what).toContain(says);
    }
    // The header's chunk and the bytes agree, but the signature was made over another chunk.
    const other = Buffer.from('other bytes');
    const resigned = { ...good, chunk: { bytes: other.length, sha256: sha256Hex(other) } };
    expect((await sendBinary(encodeBlobFrame(resigned as never, other))).error?.code).toBe('BAD_SIGNATURE');
    // A chunk header in a text frame: its bytes have nowhere to be.
    ws.sendText(JSON.stringify(signed(header('t', digest, bytes.length, 0, bytes))));
    expect((await ws.next()).error).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('must be a binary frame') });
    ws.sendText(JSON.stringify(signed({ type: 'put-blob', id: 'n', digest, size: bytes.length, offset: 0 })));
    expect((await ws.next()).error).toMatchObject({ code: 'BAD_MESSAGE', message: expect.stringContaining('base64 `data`') });
    // Nothing was stored by any of them; the good frame then is.
    ws.sendText(JSON.stringify(signed({ type: 'blob-status', id: 'st', digests: [digest] })));
    expect((await ws.next()).result).toEqual({ present: [], partial: {} });
    expect((await sendBinary(encodeBlobFrame(good as never, bytes))).result).toEqual({ complete: true });
  });
});
