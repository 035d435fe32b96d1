import type { ErrorObject, ValidateFunction } from 'ajv';
import * as generated from '../generated/reply-validators.js';
import { ErrorCode, LowcloudError } from '../errors.js';
import { resultExport } from './reply-schema.js';

export { replySchema, resultExport, resultSchemas } from './reply-schema.js';
import type { Reply, Results, ResultType } from './messages.js';

// The validators are ajv's code for these schemas, generated at build time (generated/generate.ts).
const replyValidator = (): ValidateFunction<Reply> => generated.validateReply as unknown as ValidateFunction<Reply>;

/** Parse one reply frame from an agent; an invalid one is an error naming the field. */
export function parseReply(text: string): Reply {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new LowcloudError(ErrorCode.BAD_REPLY, `the agent sent malformed JSON: ${err instanceof Error ? err.message : String(err)}`);
  }
  const validate = replyValidator();
  if (validate(value)) return value;
  throw badReply('reply', validate.errors ?? []);
}

/** Check the result of a call against what that call returns. */
export function parseResult<T extends ResultType>(type: T, result: unknown): Results[T] {
  const validate = (generated as unknown as Record<string, ValidateFunction<Results[T]>>)[resultExport(type)] as ValidateFunction<Results[T]>;
  if (validate(result)) return result;
  throw badReply(`${type} result`, validate.errors ?? []);
}

function badReply(what: string, errors: ErrorObject[]): LowcloudError {
  const e = errors[0];
  const path = e === undefined ? '' : `${e.instancePath}${e.keyword === 'required' ? `/${String(e.params.missingProperty)}` : ''}`;
  return new LowcloudError(ErrorCode.BAD_REPLY, `the agent sent an invalid ${what} at ${path || '/'}: ${e?.keyword === 'required' ? 'missing field' : (e?.message ?? 'invalid')}`, {
    details: { path: path.replace(/^\//, '').replace(/\//g, '.') },
  });
}
