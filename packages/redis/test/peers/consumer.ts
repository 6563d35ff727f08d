/**
 * A consumer in a process of its own, for the crash tests: the parent SIGKILLs it while its handler runs.
 * Env: REDIS_URL, STREAM, GROUP, CLAIM_IDLE (seconds), MODE (`hold`: the handler never ends; `crash`: the process
 * kills itself with SIGKILL inside the handler). Writes one JSON line per step to stdout.
 */
import { redisBroker } from '../../src/index.js';

const say = (line: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(line)}\n`);
const broker = redisBroker({
  url: process.env.REDIS_URL!,
  stream: process.env.STREAM!,
  claim_idle_in_seconds: Number(process.env.CLAIM_IDLE),
  onWarning: () => {},
});
const sub = broker.subscribe(
  async (event, context) => {
    say({ type: 'holding', id: context.id, attempt: context.attempt, sender: event.sender_id });
    if (process.env.MODE === 'crash') process.kill(process.pid, 'SIGKILL');
    await new Promise(() => {}); // never settles: only the lease keeps the entry here
  },
  { group: process.env.GROUP!, maxAttempts: 2 },
);
await sub.ready;
say({ type: 'ready' });
// The handler's promise keeps nothing alive: this does, until the parent kills the process.
setInterval(() => {}, 60_000);
