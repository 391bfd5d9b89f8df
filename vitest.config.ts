import { defineConfig } from 'vitest/config';

// One run over every package's tests and the end-to-end tests.
export default defineConfig({
  test: { projects: ['packages/*', 'test'] },
});
