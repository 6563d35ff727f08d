// The file broker's factory for a consumer in a child process (`consumerProcess` in file.conformance.test.ts):
// the same files as the test's own create(), found through PARLEY_CONFORMANCE_DIR. Plain JavaScript, so that
// `node` runs it without a TypeScript loader.
import { join } from 'node:path';
import { fileBroker } from '@parley/core';

const dir = process.env.PARLEY_CONFORMANCE_DIR;
if (!dir) throw new Error('PARLEY_CONFORMANCE_DIR is not set');

export const create = ({ destination }) =>
  fileBroker({ path: join(dir, `${destination}.log`), onWarning: () => {} });
