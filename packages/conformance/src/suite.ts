/**
 * runConformance: registers every case with vitest. What the adapter's brokers declare decides what runs: a case
 * whose capability or hook is missing is registered as a skipped test that says why, never left out silently.
 */
import { writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Capabilities } from '@parley/core';
import { afterAll, describe, it } from 'vitest';
import { cases } from './cases/index.js';
import { CaseContext, type CaseDefinition, type SuiteSetup } from './harness.js';
import { destinationName, newRunId } from './support.js';
import { type CaseName, type CheckName, type ConformanceOptions, caseNames, checkNames } from './types.js';

const DEFAULT_TIMEOUT_MS = 20_000;

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

/** Makes one broker to read what it declares, then closes it. */
async function discover(options: ConformanceOptions): Promise<SuiteSetup> {
  const destination = destinationName(newRunId(), 'setup');
  const broker = await options.create({ destination });
  const { capabilities } = broker;
  await broker.close();
  await options.probe.cleanup?.(destination);
  return { options, adapter: options.name, capabilities, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS };
}

function register(definition: CaseDefinition, setup: SuiteSetup, results: Map<string, CaseReport>): void {
  const { id } = definition;
  const title = definition.title?.(setup) ?? id;
  const disabled = setup.options.disable?.[id];
  if (disabled !== undefined) {
    results.set(id, { id, status: 'skipped', reason: `disabled: ${disabled}` });
    it.skip(`${title} (disabled: ${disabled})`, () => {});
    return;
  }
  const missing = definition.skip?.(setup);
  if (missing !== undefined) {
    results.set(id, { id, status: 'skipped', reason: missing });
    it.skip(`${title} (skipped: ${missing})`, () => {});
    return;
  }
  const result: CaseReport = { id, status: 'skipped', reason: 'not run (filtered out)' };
  results.set(id, result);
  const timeout = definition.testTimeoutMs?.(setup) ?? setup.timeoutMs * 3 + 10_000;
  it(
    title,
    async () => {
      const started = Date.now();
      Object.assign(result, { status: 'failed', reason: 'did not finish (timed out or interrupted)' });
      const t = new CaseContext(id, setup);
      let failure: unknown;
      try {
        await definition.run(t);
      } catch (error) {
        failure = error;
      }
      const leaks = await t.dispose();
      result.durationMs = Date.now() - started;
      if (failure === undefined && leaks.length > 0) {
        failure = new AggregateError(
          leaks,
          `[conformance] cleanup failed: ${leaks.map((e) => e.message).join('; ')}`,
        );
      }
      if (failure !== undefined) {
        result.status = 'failed';
        result.reason = (failure instanceof Error ? failure.message : String(failure)).split('\n')[0];
        throw failure;
      }
      result.status = 'passed';
      delete result.reason;
    },
    timeout,
  );
}
