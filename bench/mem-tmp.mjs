import { memoryBroker, MemoryHub } from '@parley/core';
import { envelopes } from './brokers.mjs';
const batch = envelopes(10_000);
const hub = new MemoryHub();
for (let r = 0; r < 12; r++) {
  const d = `m-${r}`;
  const b = memoryBroker({ hub, destination: d, onWarning: () => {} });
  const first = b.subscribe(() => {}, { group: 'g' }); await first.ready; await first.close();
  await Promise.all(batch.map((e) => b.publish(e)));
  let n = 0; let done; const fin = new Promise((r) => (done = r));
  const t = performance.now();
  const sub = b.subscribe(() => { if (++n === batch.length) done(); }, { group: 'g', concurrency: 32, ordering: 'none' });
  await fin;
  if (r > 5) console.log('consume', Math.round(10000 / ((performance.now() - t) / 1000)));
  await sub.close(); await b.close();
}
process.exit(0);
