// The consumer that `consumer-crash` runs in a child process and kills with SIGKILL while it handles events.
// Plain JavaScript, shipped as is (no build step between it and `node`), so that it runs from the sources too.
//
// argv[2] is a JSON object: { module, export, destination, group, concurrency }. The child imports `module`, makes
// a broker with its factory (the adapter's `create`), subscribes, and reports on stdout, one JSON object per line
// after MARK: `ready` once consuming, then `handling` for each delivery. Its handler never returns: the events it
// holds are unacknowledged when it dies, and a peer must get them.
import { pathToFileURL } from 'node:url';

const MARK = '@@parley-conformance ';
const report = (message) => process.stdout.write(`${MARK}${JSON.stringify(message)}\n`);

try {
  const config = JSON.parse(process.argv[2] ?? '{}');
  const specifier = /^[a-z][a-z0-9+.-]*:/i.test(config.module)
    ? config.module
    : pathToFileURL(config.module).href;
  const factory = (await import(specifier))[config.export ?? 'create'];
  if (typeof factory !== 'function') {
    throw new Error(
      `${config.module} has no export ${JSON.stringify(config.export ?? 'create')} that is a function`,
    );
  }
  const broker = await factory({ destination: config.destination });
  const subscription = broker.subscribe(
    async (event, context) => {
      const seq = event.metadata?.conformance_seq;
      report({
        type: 'handling',
        key: `${event.sender_id}#${seq ?? ''}`,
        id: context.id,
        attempt: context.attempt,
      });
      // Blocks until the process is killed.
      await new Promise(() => {});
    },
    {
      group: config.group,
      concurrency: config.concurrency ?? 1,
      onDeadLetter: (letter) => report({ type: 'dead-letter', messageId: letter.messageId }),
      onError: (error) => report({ type: 'error', message: String(error?.message ?? error) }),
    },
  );
  await subscription.ready;
  // Nothing else may keep the process alive once the broker idles: it lives until it is killed.
  setInterval(() => {}, 1 << 30);
  report({ type: 'ready' });
} catch (error) {
  report({ type: 'failed', message: String(error?.stack ?? error) });
  process.exitCode = 1;
}
