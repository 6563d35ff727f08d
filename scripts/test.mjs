#!/usr/bin/env node
// `pnpm test`: the one command that runs every test, on a fresh machine too.
// 1. brings up the brokers the tests need (scripts/services.mjs; idempotent, fails naming what to install)
// 2. builds, lints, type-checks and publint-checks every package
// 3. runs every package's tests (turbo), then prints why tests were skipped and one total line:
//    `Tests: N passed, N failed, N skipped`
// Colour only at a terminal: redirected, or with NO_COLOR set, every tool's output is plain text.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { formatSummary, summarise, toolEnv } from './report.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
process.env.TURBO_TELEMETRY_DISABLED = '1';
process.env.DO_NOT_TRACK = '1';
const env = toolEnv(process.env, process.stdout.isTTY);
const reportName = '.vitest-report.json';
const bin = (name) => join(root, 'node_modules', '.bin', name);
/** Every workspace package's test report (the json reporter writes one per package). */
const reports = () =>
  ['packages', 'examples']
    .flatMap((dir) =>
      existsSync(join(root, dir)) ? readdirSync(join(root, dir)).map((name) => join(root, dir, name)) : [],
    )
    .concat(join(root, 'bench'), join(root, 'scripts'))
    .map((dir) => join(dir, reportName))
    .filter((file) => existsSync(file));
const packageOf = (report) => JSON.parse(readFileSync(join(dirname(report), 'package.json'), 'utf8')).name;

function step(title, command, args, options = {}) {
  console.log(`\n[parley] ${title}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', env, ...options });
  return result.status === 0;
}

let ok = step('bringing up the brokers the tests need', process.execPath, [
  join(root, 'scripts/services.mjs'),
  'up',
]);
if (!ok) process.exit(1);

ok = step('building', bin('turbo'), ['run', 'build', '--output-logs=errors-only']);
if (!ok) process.exit(1);

const lint = step('lint and format (biome)', bin('biome'), ['check', '.']);
const checks = step('type-check and package exports (tsc, publint)', bin('turbo'), [
  'run',
  'typecheck',
  'publint',
  '--output-logs=errors-only',
]);

for (const file of reports()) rmSync(file);
const tests = step('tests', bin('turbo'), [
  'run',
  'test',
  '--concurrency=1',
  '--continue',
  '--',
  '--reporter=default',
  '--reporter=json',
  `--outputFile.json=${reportName}`,
]);

const summary = summarise(
  reports().map((file) => ({ package: packageOf(file), report: JSON.parse(readFileSync(file, 'utf8')) })),
);
const { passed, failed } = summary;
console.log(`\n${formatSummary(summary)}`);
if (!lint) console.log('[parley] lint failed: run `./pnpm format` to fix formatting, then fix what remains');
if (!checks) console.log('[parley] type-check or publint failed (see above)');
process.exit(lint && checks && tests && failed === 0 && passed > 0 ? 0 : 1);
