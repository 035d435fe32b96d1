export { isSealed, MAX_SECRET_BYTES, openSealed, parseSealed, sealValue, SEALED_PREFIX, SecretError } from './sealed.js';
export type { OpeningKey, SealedValue } from './sealed.js';
