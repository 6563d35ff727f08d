/**
 * `parley publish` end to end, into the file broker (Rasa's own JSON Lines log): the bytes Rasa would write, a
 * tracker dump, and validation before anything is sent.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FIXTURES, run, tempDir, wireLines, writeEndpoints } from './support.js';

let dir: string;
let remove: () => Promise<void>;
let log: string;

beforeEach(async () => {
  ({ dir, remove } = await tempDir());
  log = join(dir, 'events.log');
  await writeEndpoints(join(dir, 'endpoints.yml'), { type: 'file', path: log });
});
afterEach(() => remove());

const logLines = () =>
  readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l !== '');

describe('parley publish', () => {
  it('publishes a JSON Lines file byte for byte as Rasa wrote it', async () => {
    const result = await run(['publish', join(FIXTURES, 'wire', 'calm_add_contact_inspector.jsonl')], dir);
    expect(result.stderr).toContain('published 77 events to the file broker');
    expect(result.code).toBe(0);
    expect(logLines()).toEqual(wireLines('calm_add_contact_inspector.jsonl'));
  });

  it("publishes a Rasa tracker dump as its conversation's events, the sender from the dump", async () => {
    const result = await run(['publish', join(FIXTURES, 'trackers', 'tracker_moodbot.json')], dir);
    expect(result.code).toBe(0);
    const events = logLines().map((line) => JSON.parse(line) as { sender_id: string; event: string });
    const dump = JSON.parse(readFileSync(join(FIXTURES, 'trackers', 'tracker_moodbot.json'), 'utf8'));
    expect(events.map((e) => e.event)).toEqual(dump.events.map((e: { event: string }) => e.event));
    expect(new Set(events.map((e) => e.sender_id))).toEqual(new Set(['mysender']));
  });

  it("reads a tracker dump on one line, as Rasa's HTTP API returns it", async () => {
    const dump = JSON.parse(readFileSync(join(FIXTURES, 'trackers', 'tracker_moodbot.json'), 'utf8'));
    await writeFile(join(dir, 'tracker.json'), JSON.stringify(dump));
    const result = await run(['publish', 'tracker.json'], dir);
    expect(result.code).toBe(0);
    expect(logLines()).toHaveLength(dump.events.length);
  });

  it('a JSON array of events needs --sender, and takes it', async () => {
    const file = join(FIXTURES, 'trackers', 'calm_add_contact_inspector.events.json');
    const refused = await run(['publish', file], dir);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('pass the conversation with --sender ID');
    const result = await run(['publish', file, '--sender', 'alice'], dir);
    expect(result.code).toBe(0);
    expect(logLines()).toHaveLength(77);
    // Rasa's tracker store streams `{"sender_id": …, **event}`: the sender first.
    expect(logLines().every((line) => line.startsWith('{"sender_id": "alice", '))).toBe(true);
  });

  it('reports every invalid line with its number and reason, and sends nothing', async () => {
    const good = wireLines('tracker_moodbot.jsonl');
    const file = join(dir, 'mixed.jsonl');
    await writeFile(
      file,
      [good[0], '{"sender_id": "a", "event": "user", "timestamp": "noon"}', good[1], 'not json', ''].join(
        '\n',
      ),
    );
    const result = await run(['publish', file], dir);
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /mixed\.jsonl: line 2: invalid "user" event at timestamp: expected .*found string "noon"/,
    );
    expect(result.stderr).toMatch(/mixed\.jsonl: line 4: .*JSON/i);
    expect(result.stderr).toContain('2 invalid events: nothing was published');
    expect(existsSync(log) ? logLines() : []).toEqual([]);
  });

  it('--skip-invalid publishes the valid events and still reports the others', async () => {
    const good = wireLines('tracker_moodbot.jsonl');
    const file = join(dir, 'mixed.jsonl');
    await writeFile(file, [good[0], '{"event": "bot"}', good[1]].join('\n'));
    const result = await run(['publish', file, '--skip-invalid'], dir);
    expect(result.code).toBe(0);
    expect(result.stderr).toContain('line 2:');
    expect(result.stderr).toContain('published 2 events to the file broker, 1 invalid skipped');
    expect(logLines()).toEqual([good[0], good[1]]);
  });

  it('exits 1 saying how many were not sent when the broker refuses', async () => {
    await mkdir(join(dir, 'a-directory'));
    await writeEndpoints(join(dir, 'refusing.yml'), { type: 'file', path: join(dir, 'a-directory') });
    const result = await run(
      ['publish', join(FIXTURES, 'wire', 'tracker_moodbot.jsonl'), '--endpoints', 'refusing.yml'],
      dir,
    );
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(
      /published 0 of 7 events to the file broker; 7 not sent: \[file\] publish refused: .*EISDIR/,
    );
  });

  it('exits 2 naming the file when endpoints.yml is missing or wrong, and on a bad option', async () => {
    const file = join(FIXTURES, 'wire', 'tracker_moodbot.jsonl');
    const missing = await run(['publish', file, '--endpoints', 'nowhere.yml'], dir);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("nowhere.yml: no such file: expected Rasa's endpoints.yml");

    await writeFile(join(dir, 'bad.yml'), 'event_broker:\n  type: file\n  pathh: x.log\n');
    const bad = await run(['publish', file, '--endpoints', 'bad.yml'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(
      '[parley] bad.yml: event_broker: unknown key "pathh" (did you mean "path"?)',
    );

    const option = await run(['publish', file, '--no-such-option'], dir);
    expect(option.code).toBe(2);
    expect(option.stderr).toContain("unknown option '--no-such-option'");
  });

  it('has --help', async () => {
    const result = await run(['publish', '--help'], dir);
    expect(result.code).toBe(0);
    expect(result.stdout).toContain('--skip-invalid');
  });
});
