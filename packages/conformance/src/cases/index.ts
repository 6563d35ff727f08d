/** Every case, in the order of `caseNames`. */
import type { CaseDefinition } from '../harness.js';
import { caseNames } from '../types.js';
import { chaosCases } from './chaos.js';
import { crashCases } from './crash.js';
import { deliveryCases } from './delivery.js';
import { failureCases } from './failures.js';
import { flowCases } from './flow.js';
import { groupCases } from './groups.js';
import { leaseCases } from './leases.js';
import { lifecycleCases } from './lifecycle.js';
import { payloadCases } from './payloads.js';
import { redriveCases } from './redrive.js';
import { retryCases } from './retries.js';
import { shutdownCases } from './shutdown.js';

const all: readonly CaseDefinition[] = [
  ...deliveryCases,
  ...groupCases,
  ...failureCases,
  ...shutdownCases,
  ...lifecycleCases,
  ...payloadCases,
  ...flowCases,
  ...retryCases,
  ...redriveCases,
  ...leaseCases,
  ...crashCases,
  ...chaosCases,
];

const byId = new Map(all.map((definition) => [definition.id, definition]));

export const cases: readonly CaseDefinition[] = caseNames.map((id) => {
  const definition = byId.get(id);
  if (definition === undefined) throw new Error(`[conformance] case ${id} has no definition`);
  return definition;
});
