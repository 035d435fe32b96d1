import type { ErrorObject, ValidateFunction } from 'ajv';
import { ErrorCode, LowcloudError } from '../errors.js';
import { CONNECT_FORMS } from '../grants/network.js';
import { validateRequest as generatedRequest } from '../generated/request-validator.js';
import type { Request } from './messages.js';
import { CONNECT_FORMAT, FORBIDDEN_KEYS } from './request-schema.js';

export { FORBIDDEN_KEYS, processSpecSchema, requestSchema } from './request-schema.js';

// The validator is ajv's code for `withoutNull(requestSchema)`, generated at build time
// (generated/generate.ts, with the connect-target format and the sortedDistinct keyword); the
// schema's own check against JSON Schema's meta-schema is a test (protocol/schema.test.ts).
const requestValidator = (): ValidateFunction<Request> => generatedRequest as unknown as ValidateFunction<Request>;

/** Validate an incoming request; the error names the field (`details.path`). */
export function parseRequest(value: unknown): Request {
  const forbidden = findForbiddenKey(value);
  if (forbidden !== null) {
    throw new LowcloudError(ErrorCode.BAD_MESSAGE, `invalid request at /${forbidden.join('/')}: the key "${forbidden.at(-1) ?? ''}" is not allowed anywhere in a request`, {
      details: { path: forbidden.join('.') },
    });
  }
  const validateRequest = requestValidator();
  if (validateRequest(value)) return value;
  throw badMessage(validateRequest.errors ?? [], value);
}

/** The path of the first forbidden key anywhere in a parsed JSON value (iterative, linear: any depth). */
export function findForbiddenKey(value: unknown): string[] | null {
  type Node = { v: unknown; key: string; parent: Node | null };
  const stack: Node[] = [{ v: value, key: '', parent: null }];
  while (stack.length > 0) {
    const node = stack.pop() as Node;
    const v = node.v;
    if (v === null || typeof v !== 'object') continue;
    for (const k of Object.keys(v)) {
      if (FORBIDDEN_KEYS.includes(k)) {
        const path = [k];
        for (let n: Node | null = node; n !== null && n.parent !== null; n = n.parent) path.push(n.key);
        return path.reverse();
      }
      stack.push({ v: (v as Record<string, unknown>)[k], key: k, parent: node });
    }
  }
  return null;
}

function badMessage(errors: ErrorObject[], value: unknown): LowcloudError {
  const e = errors[0];
  const field = e?.keyword === 'additionalProperties' ? `/${String(e.params.additionalProperty)}` : e?.keyword === 'required' ? `/${String(e.params.missingProperty)}` : e?.keyword === 'discriminator' ? '/type' : '';
  const path = e === undefined ? '' : `${e.instancePath}${field}`;
  const what =
    e === undefined
      ? 'invalid'
      : e.keyword !== 'required' && valueAt(value, path) === null
        ? `null is not a value here (${e.keyword === 'discriminator' ? 'a request type' : (e.message ?? 'invalid')}); leave an optional field out rather than sending null`
        : e.keyword === 'additionalProperties'
        ? 'unknown field'
        : e.keyword === 'required'
          ? 'missing field'
          : e.keyword === 'format' && e.params.format === CONNECT_FORMAT
            ? `not a connect target in canonical form (${CONNECT_FORMS}; normalizeConnect in @lowcloud/api writes it)`
            : e.keyword === 'sortedDistinct'
              ? 'connect targets must be sorted and distinct (normalizeConnect in @lowcloud/api)'
              : (e.message ?? 'invalid');
  return new LowcloudError(ErrorCode.BAD_MESSAGE, `invalid request at ${path || '/'}: ${what}`, { details: { path: pointerParts(path).join('.') } });
}

/** The value at a JSON pointer of ajv's (`/spec/grants/memory`), or undefined. */
function valueAt(value: unknown, pointer: string): unknown {
  let v = value;
  for (const part of pointerParts(pointer)) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** A JSON pointer's keys, unescaped (`/config/~1etc` is `config`, `/etc`). */
function pointerParts(pointer: string): string[] {
  return pointer === '' ? [] : pointer.split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
}
