/**
 * Parley quickstart: two real Rasa conversations (moodbot, and a CALM assistant adding a contact) saved turn by
 * turn in Rasa's tracker store, which streams every new event to the broker named in endpoints.yml; a consumer
 * prints each event as it arrives. Run: `pnpm quickstart` at the repository root.
 */
import { readFileSync } from 'node:fs';
import {
  type AnyEvent,
  createBroker,
  createTracker,
  type EventEnvelope,
  InMemoryTrackerStore,
  loadEndpoints,
  stackPatch,
  userCommands,
  userIntent,
} from '@parley/core';

const fixtures = new URL('../../fixtures/rasa/trackers/', import.meta.url);
const conversations: { sender_id: string; events: AnyEvent[] }[] = [
  JSON.parse(readFileSync(new URL('tracker_moodbot.json', fixtures), 'utf8')),
  {
    sender_id: 'calm-add-contact',
    events: JSON.parse(readFileSync(new URL('calm_add_contact_inspector.events.json', fixtures), 'utf8')),
  },
];
const total = conversations.reduce((n, c) => n + c.events.length, 0);

const config = await loadEndpoints(new URL('endpoints.yml', import.meta.url).pathname);
if (!config) throw new Error('examples/quickstart/endpoints.yml has no event_broker section');
const broker = await createBroker(config);
console.log(
  `Streaming ${total} Rasa events through the "${broker.name}" broker (${config.typeAsWritten ?? 'pika'} in endpoints.yml)\n`,
);

// The consumer: one readable line per event, as it arrives.
let received = 0;
let allReceived!: () => void;
const done = new Promise<void>((resolve) => (allReceived = resolve));
const subscription = broker.subscribe(
  (event) => {
    console.log(describe(event));
    if (++received === total) allReceived();
  },
  // A throwaway group: a demo must leave no queue behind on a real broker.
  { group: `quickstart-${process.pid}`, ephemeral: true },
);
await subscription.ready;

// The producer: Rasa's tracker store saves after every user turn and streams what is new.
const store = new InMemoryTrackerStore({ eventBroker: broker });
for (const conversation of conversations) {
  const tracker = createTracker(conversation.sender_id);
  for (const event of conversation.events) {
    if (event.event === 'user' && tracker.events.length > 0) await store.save(tracker);
    tracker.events.push(event);
  }
  await store.save(tracker);
}

const timeout = setTimeout(() => {
  console.error(`\nOnly ${received} of ${total} events arrived within 30 s`);
  process.exit(1);
}, 30_000);
await done;
clearTimeout(timeout);
await broker.close();
console.log(`\n${received} of ${total} events published and consumed through "${broker.name}".`);

/** One line per event: its type, then what matters about it. */
function describe(e: EventEnvelope<AnyEvent>): string {
  const who = e.sender_id.padEnd(17);
  const type = e.event.padEnd(18);
  switch (e.event) {
    case 'user': {
      const intent = userIntent(e);
      const commands = userCommands(e).map((c) => c.command);
      const nlu = intent ? `  intent=${intent.name} (${intent.confidence?.toFixed(2)})` : '';
      return `${who}${type}${JSON.stringify(e.text)}${nlu}${commands.length ? `  commands=[${commands.join(', ')}]` : ''}`;
    }
    case 'bot':
      return `${who}${type}${JSON.stringify(e.text)}`;
    case 'action':
      return `${who}${type}${e.name}${e.policy ? `  policy=${e.policy}` : ''}`;
    case 'slot':
      return `${who}${type}${e.name} = ${JSON.stringify(e.value).slice(0, 60)}`;
    case 'stack':
      return `${who}${type}${stackPatch(e)
        .map(
          (op) =>
            `${op.op} ${op.path}${'value' in op && isFrame(op.value) ? ` ${op.value.flow_id}@${op.value.step_id}` : ''}`,
        )
        .join(', ')}`;
    case 'flow_started':
      return `${who}${type}${e.flow_id}`;
    case 'flow_completed':
    case 'flow_interrupted':
    case 'flow_resumed':
    case 'flow_cancelled':
      return `${who}${type}${e.flow_id} at ${e.step_id}`;
    default:
      return `${who}${type}`.trimEnd();
  }
}

function isFrame(value: unknown): value is { flow_id: string; step_id: string } {
  return typeof value === 'object' && value !== null && 'flow_id' in value && 'step_id' in value;
}
