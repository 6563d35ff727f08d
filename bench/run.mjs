// `pnpm bench`: every benchmark, each beside its baseline in the same run.
//   pnpm bench                    all of them
//   pnpm bench -- codec amqp      only those (codec, embedded, amqp, kafka, redis, sqs)
//   pnpm bench -- --quick         a smoke run (rough figures)
//   pnpm bench -- codec --readme  also write the codec table into the READMEs (between their codec-bench markers)
//   pnpm bench -- codec --wall    time the codec by the wall clock, not by the process's CPU time
//   pnpm bench -- codec --thread  time it by the main thread's CPU time (Linux)
import { readFileSync, writeFileSync } from 'node:fs';
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
  const clock = args.includes('--wall') ? 'wall' : args.includes('--thread') ? 'thread' : 'cpu';
  const result = codec.run(quick ? { runs: 3, slices: 3, sliceMs: 10, warmupMs: 100, clock } : { clock });
  const verdict = (what, value, target, floor) =>
    console.log(
      `${what}: ${value.toFixed(2)}× (target ≥ ${target}×${floor ? `, floor ${floor}×` : ''}): ${
        value >= target ? 'met' : floor && value >= floor ? 'above the floor, target NOT met' : 'NOT met'
      }`,
    );
  console.log('');
  verdict('decode + validate vs JSON.parse', result.decodeRatio, 0.84);
  verdict('python encode vs JSON.stringify', result.pythonRatio, 0.75, 0.6);
  console.log(`compact encode vs JSON.stringify: ${result.compactRatio.toFixed(2)}× (for comparison)`);
  if (args.includes('--readme')) writeReadme(result.markdown);
}
if (wants('embedded') || wants('memory') || wants('file')) {
  await embedded.run(quick ? { events: 2_000, runs: 1, seconds: 1 } : {});
}
if (wants('amqp')) {
  await (await import('./amqp.mjs')).run(
    quick ? { events: 1_000, runs: 1, seconds: 1, pikaEvents: 500, pikaRuns: 1 } : {},
  );
}
for (const name of ['kafka', 'redis', 'sqs']) {
  if (!wants(name)) continue;
  await (await import(`./${name}.mjs`)).run(quick ? { events: 1_000, runs: 1, seconds: 1 } : {});
}

/** Replaces the codec table (between the codec-bench markers) in the READMEs that show it with this run's. */
function writeReadme(markdown) {
  for (const file of ['../README.md', '../packages/core/README.md']) {
    const path = new URL(file, import.meta.url);
    const readme = readFileSync(path, 'utf8');
    const start = '<!-- codec-bench:start';
    const end = '<!-- codec-bench:end -->';
    const i = readme.indexOf(start);
    const j = readme.indexOf(end);
    if (i < 0 || j < i) throw new Error(`${file} has no ${start} … ${end} block`);
    const opening = readme.slice(i, readme.indexOf('\n', i) + 1);
    writeFileSync(path, `${readme.slice(0, i)}${opening}${markdown}\n${readme.slice(j)}`);
    console.log(`${file.slice(3)}: codec table written`);
  }
}
