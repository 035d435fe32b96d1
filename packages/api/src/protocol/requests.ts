// @lowcloud/api/requests: the agent's side of the protocol, checking what arrives against the
// request schema. An entry of its own: its generated validator (generated/request-validator.js,
// 430 KB of code) took ~20 ms of the start-up of every command, which only sends requests.
import { sha256Hex } from '../digest.js';
import { badBlobFrame } from './blob-frame.js';
import type { Request } from './messages.js';
import { parseRequest } from './schema.js';

export { parseRequest, requestSchema } from './schema.js';

type PutBlob = Extract<Request, { type: 'put-blob' }>;

/** The header of a binary frame as a typed put-blob whose `chunk` matches the bytes that followed it. */
export function parseBlobFrame(header: unknown, payload: Buffer): PutBlob {
  const req = parseRequest(header);
  if (req.type !== 'put-blob' || req.chunk === undefined || req.data !== undefined) throw badBlobFrame('only put-blob with `chunk` (and no `data`) travels in a binary frame');
  if (payload.length !== req.chunk.bytes) throw badBlobFrame(`the header announces ${req.chunk.bytes} bytes, ${payload.length} follow`);
  if (sha256Hex(payload) !== req.chunk.sha256) throw badBlobFrame(`the ${payload.length} bytes do not hash to the header's chunk.sha256 (changed on the way?)`);
  return req;
}
