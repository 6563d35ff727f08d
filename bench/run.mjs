// `pnpm bench`: every benchmark, each beside its baseline in the same run. `pnpm bench -- --quick` for a smoke run.
import * as codec from './codec.mjs';

const quick = process.argv.includes('--quick');
const options = quick ? { rounds: 3, minMs: 50, warmupMs: 100 } : {};
console.log(
  `Node ${process.version}, ${process.platform}/${process.arch}${quick ? ' (quick run: figures are rough)' : ''}`,
);

const { decodeRatio } = codec.run(options);
const target = 0.75;
console.log(
  `\ndecode + validate keeps ${decodeRatio.toFixed(2)}× the throughput of bare JSON.parse (target ≥ ${target}×): ${decodeRatio >= target ? 'met' : 'NOT met'}`,
);
