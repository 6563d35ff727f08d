/**
 * runConformance: registers every case with vitest. What the adapter's brokers declare decides what runs: a case
 * whose capability or hook is missing is registered as a skipped test that says why, never left out silently.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Capabilities } from '@parley/core';
import { afterAll, describe, it } from 'vitest';
import { cases } from './cases/index.js';
import type { CaseDefinition, SuiteSetup } from './harness.js';
import { discover, executeCase, firstLine, skipReason } from './run-case.js';
import { type CaseName, type CheckName, type ConformanceOptions, caseNames, checkNames } from './types.js';

type CaseStatus = 'passed' | 'failed' | 'skipped';

interface CaseReport {
  id: CaseName;
  status: CaseStatus;
  reason?: string;
  durationMs?: number;
}

interface CheckReport {
  id: CheckName;
  status: 'enabled' | 'disabled';
  reason?: string;
}

/** The machine-readable result: which cases passed, failed or were skipped (and why), for this adapter. */
export interface ConformanceReport {
  readonly adapter: string;
  readonly capabilities: Capabilities;
  readonly cases: readonly CaseReport[];
  /** Checks within cases (`checkNames`): on, or disabled with the adapter's reason. */
  readonly checks: readonly CheckReport[];
}

/** Registers every conformance case with vitest (describe/it). Call it once in a test file. */
export function runConformance(options: ConformanceOptions): void {
  const known: readonly string[] = [...caseNames, ...checkNames];
  const unknown = Object.keys(options.disable ?? {}).filter((key) => !known.includes(key));
  if (unknown.length > 0) {
    throw new Error(
      `[conformance] disable names unknown cases: ${unknown.join(', ')} (cases: ${caseNames.join(', ')}; checks: ${checkNames.join(', ')})`,
    );
  }
  describe(`conformance: ${options.name}`, async () => {
    const setup = await discover(options);
    const results = new Map<string, CaseReport>();
    for (const definition of cases) register(definition, setup, results);
    afterAll(() => {
      if (options.report === false) return;
      const report: ConformanceReport = {
        adapter: options.name,
        capabilities: setup.capabilities,
        cases: [...results.values()],
        checks: checkNames.map((id): CheckReport => {
          const reason = options.disable?.[id];
          return reason === undefined ? { id, status: 'enabled' } : { id, status: 'disabled', reason };
        }),
      };
      writeFileSync(
        resolve(options.report ?? 'conformance-report.json'),
        `${JSON.stringify(report, null, 2)}\n`,
      );
    });
  });
}

function register(definition: CaseDefinition, setup: SuiteSetup, results: Map<string, CaseReport>): void {
  const { id } = definition;
  const title = definition.title?.(setup) ?? id;
  const skipped = skipReason(definition, setup);
  if (skipped !== undefined) {
    results.set(id, { id, status: 'skipped', reason: skipped });
    it.skip(`${title} (${skipped})`, () => {});
    return;
  }
  const result: CaseReport = { id, status: 'skipped', reason: 'not run (filtered out)' };
  results.set(id, result);
  const timeout = definition.testTimeoutMs?.(setup) ?? setup.timeoutMs * 3 + 10_000;
  it(
    title,
    async () => {
      Object.assign(result, { status: 'failed', reason: 'did not finish (timed out or interrupted)' });
      const { failure, durationMs } = await executeCase(definition, setup);
      result.durationMs = durationMs;
      if (failure !== undefined) {
        result.status = 'failed';
        result.reason = firstLine(failure);
        throw failure;
      }
      result.status = 'passed';
      delete result.reason;
    },
    timeout,
  );
}
