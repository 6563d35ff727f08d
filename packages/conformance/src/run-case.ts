/**
 * Running one case outside vitest's `describe`/`it`: what `runConformance` does for each registered test, and what
 * the suite's own tests use to show that a case FAILS against a broken driver (a suite that cannot fail proves
 * nothing).
 */
import { cases } from './cases/index.js';
import { CaseContext, type CaseDefinition, type SuiteSetup } from './harness.js';
import { destinationName, newRunId } from './support.js';
import { type CaseName, type ConformanceOptions, caseNames } from './types.js';

const DEFAULT_TIMEOUT_MS = 20_000;

/** The outcome of one case. */
export interface CaseResult {
  readonly id: CaseName;
  readonly status: 'passed' | 'failed' | 'skipped';
  /** Why it was skipped, or the first line of its failure. */
  readonly reason?: string;
  /** What made it fail (an assertion error, a timeout, a cleanup failure). */
  readonly error?: unknown;
  readonly durationMs: number;
}

/** Makes one broker to read what it declares, then closes it. */
export async function discover(options: ConformanceOptions): Promise<SuiteSetup> {
  const destination = destinationName(newRunId(), 'setup');
  const broker = await options.create({ destination });
  const { capabilities } = broker;
  await broker.close();
  await options.probe.cleanup?.(destination);
  return { options, adapter: options.name, capabilities, timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS };
}

/** The definition of a case by its id. */
export function caseDefinition(id: CaseName): CaseDefinition {
  const definition = cases.find((c) => c.id === id);
  if (definition === undefined) {
    throw new Error(`[conformance] no case ${JSON.stringify(id)} (cases: ${caseNames.join(', ')})`);
  }
  return definition;
}

/** Why a case does not run for this adapter (disabled with a reason, or a capability or hook missing), if so. */
export function skipReason(definition: CaseDefinition, setup: SuiteSetup): string | undefined {
  const disabled = setup.options.disable?.[definition.id];
  if (disabled !== undefined) return `disabled: ${disabled}`;
  const missing = definition.skip?.(setup);
  return missing === undefined ? undefined : `skipped: ${missing}`;
}

/**
 * Runs a case's body with a fresh context and disposes of everything it opened, whatever happened. A case whose
 * body passed but whose cleanup failed (a close that hangs, say) fails too: it would leak into the next case.
 */
export async function executeCase(
  definition: CaseDefinition,
  setup: SuiteSetup,
): Promise<{ readonly failure: unknown; readonly durationMs: number }> {
  const started = Date.now();
  const t = new CaseContext(definition.id, setup);
  let failure: unknown;
  try {
    await definition.run(t);
  } catch (error) {
    failure = error;
  }
  const leaks = await t.dispose();
  if (failure === undefined && leaks.length > 0) {
    failure = new AggregateError(
      leaks,
      `[conformance] cleanup failed: ${leaks.map((e) => e.message).join('; ')}`,
    );
  }
  return { failure, durationMs: Date.now() - started };
}

/** The first line of an error's message, for reports. */
export function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0] ?? '';
}

/**
 * Runs one case against an adapter, outside `describe`/`it`, and tells how it went (it never throws for a failing
 * case). For tests of the suite itself, and for running one case while writing an adapter:
 *
 * ```ts
 * const result = await runCase('competing-consumers', options);
 * expect(result.status).toBe('failed'); // this broken driver delivers each event to two consumers
 * ```
 *
 * `setup` reuses what an earlier `discover(options)` read, so that many runs make one broker to read capabilities.
 */
export async function runCase(
  id: CaseName,
  options: ConformanceOptions,
  setup?: SuiteSetup,
): Promise<CaseResult> {
  const definition = caseDefinition(id);
  const known = setup ?? (await discover(options));
  const skipped = skipReason(definition, known);
  if (skipped !== undefined) return { id, status: 'skipped', reason: skipped, durationMs: 0 };
  const { failure, durationMs } = await executeCase(definition, known);
  return failure === undefined
    ? { id, status: 'passed', durationMs }
    : { id, status: 'failed', reason: firstLine(failure), error: failure, durationMs };
}
