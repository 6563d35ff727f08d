// What `pnpm test` prints besides the tools' own output: whether to colour it, and the closing summary (totals and
// why each skipped test was skipped). Kept apart from scripts/test.mjs so that scripts/test/report.test.mjs can
// test it without running every suite.

/**
 * Colour only for a person at a terminal: never when NO_COLOR is set (https://no-color.org), always when
 * FORCE_COLOR is (other than 0 or false), otherwise only when stdout is a TTY. vitest colours whenever TERM is not
 * `dumb` or CI is set, redirected or not, so the choice is passed down to every tool as NO_COLOR.
 * @param {Readonly<Record<string, string | undefined>>} env
 * @param {boolean | undefined} isTTY
 */
export function wantsColour(env, isTTY) {
  if ('NO_COLOR' in env && env.NO_COLOR !== '') return false;
  if (env.FORCE_COLOR !== undefined) return env.FORCE_COLOR !== '0' && env.FORCE_COLOR !== 'false';
  return isTTY === true;
}

/** The environment for the tools `pnpm test` runs: the caller's, with colour turned off when it is not wanted. */
export function toolEnv(env, isTTY) {
  if (wantsColour(env, isTTY)) return { ...env };
  const { FORCE_COLOR: _, ...rest } = env;
  return { ...rest, NO_COLOR: '1' };
}

/**
 * Why a test was skipped, from its title: the suites put the reason in a closing parenthesis, as in
 * `persistent (skipped: capabilities.persistent is false)` or `reads a file written by Rasa (python3 missing:
 * skipped)`.
 * @param {string} title
 */
export function skipReason(title) {
  const match = /\(([^()]*)\)\s*$/.exec(title);
  if (!match) return 'no reason in the test name';
  return match[1].replace(/^skipped:\s*/, '').replace(/:\s*skipped$/, '');
}

/**
 * Totals and skipped tests of vitest JSON reports, one per package.
 * @param {{ package: string, report: any }[]} reports
 */
export function summarise(reports) {
  let passed = 0;
  let failed = 0;
  let skipped = 0;
  /** @type {{ package: string, file: string, title: string, reason: string }[]} */
  const skips = [];
  for (const { package: name, report } of reports) {
    passed += report.numPassedTests;
    failed += report.numFailedTests;
    skipped += report.numPendingTests + report.numTodoTests;
    for (const file of report.testResults ?? []) {
      for (const test of file.assertionResults ?? []) {
        if (!['pending', 'skipped', 'todo', 'disabled'].includes(test.status)) continue;
        const title = test.fullName ?? test.title;
        skips.push({ package: name, file: file.name, title, reason: skipReason(title) });
      }
    }
  }
  return { passed, failed, skipped, skips };
}

/**
 * The closing lines: skipped tests grouped by reason, then the one total line CI reads,
 * `Tests: N passed, N failed, N skipped`.
 * @param {ReturnType<typeof summarise>} summary
 */
export function formatSummary(summary) {
  const lines = [];
  if (summary.skips.length > 0) {
    lines.push(`Skipped (${summary.skips.length}), by reason:`);
    const byReason = new Map();
    for (const skip of summary.skips) byReason.set(skip.reason, [...(byReason.get(skip.reason) ?? []), skip]);
    for (const [reason, skips] of byReason) {
      lines.push(`  ${reason}:`);
      for (const skip of skips) lines.push(`    - ${skip.package}: ${skip.title}`);
    }
    lines.push('');
  }
  lines.push(`Tests: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
  return lines.join('\n');
}
