// `pnpm bench`: every benchmark, each beside its baseline in the same run.
//   pnpm bench                    all of them
//   pnpm bench -- codec amqp      only those (codec, embedded, amqp, kafka, redis, sqs)
//   pnpm bench -- --quick         a smoke run (rough figures)
//   pnpm bench -- codec --readme  also write each bench's output into the READMEs that show it (between their
//                                 bench markers): the codec table into the root and core READMEs, the embedded
//                                 brokers' output into the root README, each adapter's
//                                 printed output into its package's README, and a summary of the ratios into the root
//   pnpm bench -- codec --wall    time the codec by the wall clock, not by the process's CPU time
//   pnpm bench -- codec --thread  time it by the main thread's CPU time (Linux)
import { fork } from 'node:child_process';
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
  const { output } = await capturing(() => embedded.run(quick ? { events: 2_000, runs: 1, seconds: 1 } : {}));
  if (args.includes('--readme'))
    writeBlock('../README.md', 'embedded-bench', `\`\`\`\n${output.join('\n').trim()}\n\`\`\``);
}
/** Per adapter: its ratios, for the root README's summary. */
const summary = [];
for (const name of ['amqp', 'kafka', 'redis', 'sqs']) {
  if (!wants(name)) continue;
  // Each adapter in a Node process of its own (see adapter.mjs).
  const { result, output } = await inChild(name);
  if (result) summary.push({ name, target: name === 'amqp' ? 0.95 : 0.9, result });
  if (args.includes('--readme') && result) {
    writeBlock(`../packages/${name}/README.md`, 'bench', `\`\`\`\n${output.join('\n').trim()}\n\`\`\``);
  }
}
if (args.includes('--readme') && summary.length > 0)
  writeBlock('../README.md', 'adapters-bench', summaryTable());

/** Runs adapter.mjs for one adapter in a child process, printing its output as it comes and keeping it. */
function inChild(name) {
  return new Promise((resolve, reject) => {
    const child = fork(new URL('./adapter.mjs', import.meta.url), [name, ...(quick ? ['--quick'] : [])], {
      execArgv: ['--expose-gc'],
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    const output = [];
    let pending = '';
    child.stdout.on('data', (chunk) => {
      process.stdout.write(chunk);
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop();
      output.push(...lines);
    });
    let result;
    child.on('message', (message) => {
      result = message.result ?? undefined;
      if (message.exitCode) process.exitCode = message.exitCode;
    });
    child.once('error', reject);
    child.once('exit', (code) => {
      if (pending) output.push(pending);
      if (code !== 0) process.exitCode = code ?? 1;
      resolve({ result, output });
    });
  });
}

/** Runs `fn`, printing as usual and keeping what it printed. */
async function capturing(fn) {
  const output = [];
  const log = console.log;
  console.log = (...parts) => {
    output.push(parts.join(' '));
    log(...parts);
  };
  try {
    return { result: await fn(), output };
  } finally {
    console.log = log;
  }
}

/** The adapters' ratios of this run, as a markdown table. */
function summaryTable() {
  const cell = (median, perRun, target) =>
    median === undefined
      ? 'n/a'
      : `${median.toFixed(2)}× (runs ${Math.min(...perRun).toFixed(2)} – ${Math.max(...perRun).toFixed(2)}), ${
          median >= target ? 'met' : 'not met'
        }`;
  const rows = summary.map(
    ({ name, target, result }) =>
      `| ${name} | ${cell(result.publishRatio, result.publishRatios, target)} | ${cell(
        result.consumeRatio,
        result.consumeRatios,
        target,
      )} | ≥ ${target}× |`,
  );
  return [
    `Node ${process.version}; ratios of the medians of alternating runs of 10,000 events, each adapter beside its raw client in the same run, in a process of its own (\`./pnpm bench -- --readme\` writes this table).`,
    '',
    '| adapter | publish | consume | target |',
    '|---|---|---|---|',
    ...rows,
  ].join('\n');
}

/** Replaces the codec table in the READMEs that show it with this run's. */
function writeReadme(markdown) {
  for (const file of ['../README.md', '../packages/core/README.md'])
    writeBlock(file, 'codec-bench', markdown);
}

/**
 * Replaces what stands between `<!-- <marker>:start … -->` and `<!-- <marker>:end -->` in a README with `text`.
 */
function writeBlock(file, marker, text) {
  const path = new URL(file, import.meta.url);
  const readme = readFileSync(path, 'utf8');
  const start = `<!-- ${marker}:start`;
  const end = `<!-- ${marker}:end -->`;
  const i = readme.indexOf(start);
  const j = readme.indexOf(end);
  if (i < 0 || j < i) throw new Error(`${file} has no ${start} … ${end} block`);
  const opening = readme.slice(i, readme.indexOf('\n', i) + 1);
  writeFileSync(path, `${readme.slice(0, i)}${opening}${text}\n${readme.slice(j)}`);
  console.log(`${file.slice(3)}: ${marker} written`);
}
