// What `pnpm test` prints: no colour codes when its output is redirected (or NO_COLOR is set), and the reason of
// every skipped test in the closing summary. Checked against real vitest runs of a small fixture suite.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { formatSummary, skipReason, summarise, toolEnv, wantsColour } from '../report.mjs';

const fixture = fileURLToPath(new URL('./fixtures/skips/', import.meta.url));
const vitest = fileURLToPath(new URL('../node_modules/.bin/vitest', import.meta.url));
const ESC = '\u001b[';

/** Runs the fixture suite as `pnpm test` runs a package's (piped, so never a TTY), with `env`. */
function runFixture(env) {
  const outputFile = join(mkdtempSync(join(tmpdir(), 'parley-report-')), 'report.json');
  const result = spawnSync(
    vitest,
    ['run', '--reporter=default', '--reporter=json', `--outputFile.json=${outputFile}`],
    { cwd: fixture, env, encoding: 'utf8' },
  );
  return { output: result.stdout + result.stderr, report: JSON.parse(readFileSync(outputFile, 'utf8')) };
}

describe('colour', () => {
  it('is on at a terminal only, off with NO_COLOR, forced with FORCE_COLOR', () => {
    expect(wantsColour({}, true)).toBe(true);
    expect(wantsColour({}, false)).toBe(false);
    expect(wantsColour({}, undefined)).toBe(false);
    expect(wantsColour({ NO_COLOR: '1' }, true)).toBe(false);
    expect(wantsColour({ NO_COLOR: '1', FORCE_COLOR: '1' }, true)).toBe(false);
    expect(wantsColour({ FORCE_COLOR: '1' }, false)).toBe(true);
    expect(wantsColour({ FORCE_COLOR: '0' }, true)).toBe(false);
    expect(toolEnv({ FORCE_COLOR: '0', PATH: '/bin' }, true)).toEqual({ PATH: '/bin', NO_COLOR: '1' });
  });

  it("leaves no colour codes in vitest's redirected output, even under CI (which vitest colours)", () => {
    const base = { ...process.env, TERM: 'xterm-256color', CI: 'true' };
    delete base.NO_COLOR;
    delete base.FORCE_COLOR;
    // Without the switch vitest colours redirected output: the check below would catch it.
    expect(runFixture(base).output).toContain(ESC);
    const { output } = runFixture(toolEnv(base, false));
    expect(output).toContain('1 passed');
    expect(output).not.toContain(ESC);
  });
});

describe('summary', () => {
  it('lists every skipped test under its reason, then the total line', () => {
    const { report } = runFixture(toolEnv(process.env, false));
    const summary = summarise([{ package: '@parley/fixture', report }]);
    expect(summary).toMatchObject({ passed: 1, failed: 0, skipped: 2 });
    expect(formatSummary(summary)).toBe(
      [
        'Skipped (2), by reason:',
        '  no accelerator on this machine:',
        '    - @parley/fixture: sample talks to a GPU (skipped: no accelerator on this machine)',
        '  needs /usr/bin/python3:',
        '    - @parley/fixture: sample reads a Rasa file (needs /usr/bin/python3)',
        '',
        'Tests: 1 passed, 0 failed, 2 skipped',
      ].join('\n'),
    );
  });

  it('reads the reason the suites put in test names', () => {
    expect(skipReason('conformance: memory persistent (skipped: capabilities.persistent is false)')).toBe(
      'capabilities.persistent is false',
    );
    expect(skipReason('chaos-stall (disabled: an in-process broker has no connection to stall)')).toBe(
      'disabled: an in-process broker has no connection to stall',
    );
    expect(skipReason('reads a file written by Rasa (python3 missing: skipped)')).toBe('python3 missing');
    expect(skipReason('a test without one')).toBe('no reason in the test name');
  });

  it('prints only the total line when nothing was skipped', () => {
    expect(formatSummary({ passed: 3, failed: 1, skipped: 0, skips: [] })).toBe(
      'Tests: 3 passed, 1 failed, 0 skipped',
    );
  });
});
