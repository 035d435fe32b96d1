import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { infraSchema } from './schema.js';

describe('published JSON Schema', () => {
  it('schema/infra.schema.json is exactly the schema the code validates with (regenerate: npm run schema)', () => {
    const published: unknown = JSON.parse(readFileSync(new URL('../../../../schema/infra.schema.json', import.meta.url), 'utf8'));
    expect(published).toEqual(JSON.parse(JSON.stringify(infraSchema)));
  });
});
