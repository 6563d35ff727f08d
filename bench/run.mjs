// `pnpm bench`: every benchmark, each beside its baseline in the same run.
//   pnpm bench                 all of them
//   pnpm bench -- codec amqp   only those
//   pnpm bench -- --quick      a smoke run (rough figures)
import * as codec from './codec.mjs';
import * as embedded from './embedded.mjs';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args.filter((a) => !a.startsWith('--'));
const wants = (name) => only.length === 0 || only.includes(name);
console.log(
  `Node ${process.version}, ${process.platform}/${process.arch}${quick ? ' (quick run: figures are rough)' : ''}`,
);

if (wants('codec')) {
  const { decodeRatio } = codec.run(quick ? { rounds: 3, minMs: 50, warmupMs: 100 } : {});
  const target = 0.75;
  console.log(
    `\ndecode + validate keeps ${decodeRatio.toFixed(2)}× the throughput of bare JSON.parse (target ≥ ${target}×): ${decodeRatio >= target ? 'met' : 'NOT met'}`,
  );
}
if (wants('embedded') || wants('memory') || wants('file')) {
  await embedded.run(quick ? { events: 2_000, runs: 1, seconds: 1 } : {});
}
if (wants('amqp')) {
  await (await import('./amqp.mjs')).run(
    quick ? { events: 1_000, runs: 1, seconds: 1, pikaEvents: 500, pikaRuns: 1 } : {},
  );
}
