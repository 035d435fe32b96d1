import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { validatorFiles } from './generate.js';

describe('generated validators', () => {
  it('are the code ajv writes for the schemas as they are (run `npm run validators` after changing a schema)', () => {
    for (const [name, text] of Object.entries(validatorFiles())) {
      expect(readFileSync(new URL(`./${name}`, import.meta.url), 'utf8'), `${name} is stale: run \`npm run validators\``).toBe(text);
    }
  });
});
