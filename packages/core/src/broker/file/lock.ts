/**
 * The per-group lock file (`<path>.parley/<group>.lock`): one consumer process per group, because two readers of
 * one offset file would each deliver every line. Consumers within one process share the group's tailer instead.
 */
import { readFile, stat, unlink, writeFile } from 'node:fs/promises';
import { codeOf, fail, noop } from './io.js';

/** A lock file this young without a pid is being taken right now (the owner writes its pid just after). */
const FRESH_MS = 10_000;

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return codeOf(error) === 'EPERM';
  }
}

/**
 * Takes the group's lock, or throws `FILE_GROUP_LOCKED` naming the process that holds it. A lock left by a dead
 * process is taken over, with a warning.
 */
export async function acquireLock(lockFile: string, group: string, warn: (m: string) => void): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(lockFile, `${process.pid}\n`, { flag: 'wx' });
      return;
    } catch (error) {
      if (codeOf(error) !== 'EEXIST') throw error;
    }
    const text = await readFile(lockFile, 'utf8').catch(() => '');
    const pid = Number.parseInt(text, 10);
    const fresh = await stat(lockFile).then(
      (s) => Date.now() - s.mtimeMs < FRESH_MS,
      () => false,
    );
    const held = Number.isInteger(pid) ? pid !== process.pid && isAlive(pid) : fresh;
    if (held || attempt >= 2) {
      const who = Number.isInteger(pid) ? `process ${pid}` : 'another process';
      throw fail(
        `group "${group}" is consumed by ${who} (lock file ${lockFile}); stop that consumer, or delete the lock ` +
          'file if it is not a Parley consumer',
        'FILE_GROUP_LOCKED',
      );
    }
    if (pid !== process.pid)
      warn(`[parley] [file] took over the stale lock ${lockFile} of process ${text.trim() || '?'}`);
    // Unlink only what we judged stale, so a process that took it over meanwhile keeps its lock.
    if ((await readFile(lockFile, 'utf8').catch(() => undefined)) === text)
      await unlink(lockFile).catch(noop);
  }
}

/** Gives the group's lock up. */
export async function releaseLock(lockFile: string): Promise<void> {
  await unlink(lockFile).catch(noop);
}
