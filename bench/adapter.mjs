// One adapter's bench in a process of its own (what run.mjs starts for each adapter): `node adapter.mjs <name>
// [--quick]`. Prints as the bench does, and sends its result to the parent. A process per adapter, as an application
// using one adapter is: in one process shared by all of them, the code core shares across adapters (subscriptions,
// the publisher) has met every adapter's message classes before the one measured, and runs slower for it, while
// each baseline's code has met only its own client.
const [name] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
const quick = process.argv.includes('--quick');
const options =
  name === 'amqp'
    ? { events: 1_000, runs: 1, seconds: 1, pikaEvents: 500, pikaRuns: 1 }
    : { events: 1_000, runs: 1, seconds: 1 };
const result = await (await import(`./${name}.mjs`)).run(quick ? options : {});
process.send?.({ result: result ?? null, exitCode: process.exitCode ?? 0 });
