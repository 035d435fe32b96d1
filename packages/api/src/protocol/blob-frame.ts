import { ErrorCode, LowcloudError } from '../errors.js';
import type { Request } from './messages.js';

type PutBlob = Extract<Request, { type: 'put-blob' }>;

/** Raw bytes one binary put-blob frame carries (the client's chunk size). */
export const BLOB_CHUNK_BYTES = 8 * 2 ** 20;
/** The JSON header of a binary frame (a put-blob request with its signature) is small. */
export const BLOB_HEADER_MAX_BYTES = 4096;
/** The largest binary frame an agent takes: one chunk and its header. */
export const BLOB_FRAME_MAX_BYTES = BLOB_CHUNK_BYTES + 4 + BLOB_HEADER_MAX_BYTES;

/**
 * A put-blob chunk as one binary WebSocket frame: a 4-byte big-endian header length, the request
 * as JSON (with `chunk: { bytes, sha256 }` in place of base64 `data`), then the raw bytes. The
 * bytes skip base64 and JSON on both sides; the signature covers the header and so their sha256.
 */
export function encodeBlobFrame(req: PutBlob, payload: Uint8Array): Buffer {
  const header = Buffer.from(JSON.stringify(req), 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(header.length);
  return Buffer.concat([len, header, payload]);
}

/** Split a binary frame at the edge into its JSON header (not yet checked) and the bytes after it. */
export function readBlobFrame(frame: Buffer): { header: unknown; payload: Buffer } {
  if (frame.length > BLOB_FRAME_MAX_BYTES) throw badBlobFrame(`${frame.length} bytes, more than ${BLOB_FRAME_MAX_BYTES} (one chunk of at most ${BLOB_CHUNK_BYTES} bytes and its header); send smaller chunks`);
  if (frame.length < 4) throw badBlobFrame('shorter than its 4-byte header length');
  const n = frame.readUInt32BE(0);
  if (n > BLOB_HEADER_MAX_BYTES || 4 + n > frame.length) throw badBlobFrame(`header length ${n} is past the frame (${frame.length} bytes) or over ${BLOB_HEADER_MAX_BYTES}`);
  let header: unknown;
  try {
    header = JSON.parse(frame.subarray(4, 4 + n).toString('utf8'));
  } catch (err) {
    throw badBlobFrame(`the header is not JSON: ${(err as Error).message}`);
  }
  return { header, payload: frame.subarray(4 + n) };
}

/** A frame refused at the edge (BAD_MESSAGE), saying what is wrong with it. */
export function badBlobFrame(message: string): LowcloudError {
  return new LowcloudError(ErrorCode.BAD_MESSAGE, `binary frame: ${message}`);
}
