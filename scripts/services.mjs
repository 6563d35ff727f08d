#!/usr/bin/env node
// Brings up what the tests need, idempotently: `node scripts/services.mjs up`. Every check first looks for a
// running service (URLs from env vars, localhost defaults) and starts one only when it is missing; when it
// cannot, it fails with the exact thing to install. Brokers are added here as the adapters arrive.
const services = [];

async function main() {
  const failures = [];
  for (const service of services) {
    try {
      const where = await service.up();
      console.log(`  ${service.name}: ${where}`);
    } catch (error) {
      failures.push(`${service.name}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (services.length === 0) console.log('  (no external services needed yet)');
  if (failures.length > 0) {
    console.error(`[parley] cannot run the tests:\n${failures.map((f) => `  - ${f}`).join('\n')}`);
    process.exit(1);
  }
}

await main();
