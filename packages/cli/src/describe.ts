/**
 * One readable line per event: time, conversation, type, then what matters about the event (the quickstart's
 * view, with the time in front).
 */
import { type AnyEvent, type EventEnvelope, stackPatch, userCommands, userIntent } from '@parley/core';
import type { Style } from './output.js';

type Styler = (style: Style, text: string) => string;
const plain: Styler = (_style, text) => text;

/** `12:00:01.123  mysender  user  "hi"  intent=greet (0.92)`; styled when given a terminal's styler. */
export function describeEvent(e: EventEnvelope<AnyEvent>, style: Styler = plain): string {
  const time = Number.isFinite(e.timestamp) ? new Date(e.timestamp * 1000).toISOString().slice(11, 23) : '?';
  const head = `${style('dim', time)}  ${e.sender_id.padEnd(17)} ${style('bold', e.event.padEnd(18))}`;
  const detail = detailOf(e);
  return detail === '' ? head.trimEnd() : `${head}${detail}`;
}

function detailOf(e: EventEnvelope<AnyEvent>): string {
  switch (e.event) {
    case 'user': {
      const intent = userIntent(e);
      const commands = userCommands(e).map((c) => c.command);
      const nlu = intent ? `  intent=${intent.name} (${intent.confidence?.toFixed(2)})` : '';
      return `${JSON.stringify(e.text)}${nlu}${commands.length ? `  commands=[${commands.join(', ')}]` : ''}`;
    }
    case 'bot':
      return JSON.stringify(e.text);
    case 'action':
      return `${e.name}${e.policy ? `  policy=${e.policy}` : ''}`;
    case 'slot':
      return `${e.name} = ${String(JSON.stringify(e.value)).slice(0, 60)}`;
    case 'stack':
      return stackPatch(e)
        .map(
          (op) =>
            `${op.op} ${op.path}${'value' in op && isFrame(op.value) ? ` ${op.value.flow_id}@${op.value.step_id}` : ''}`,
        )
        .join(', ');
    case 'flow_started':
      return String(e.flow_id);
    case 'flow_completed':
    case 'flow_interrupted':
    case 'flow_resumed':
    case 'flow_cancelled':
      return `${e.flow_id} at ${e.step_id}`;
    default:
      return '';
  }
}

function isFrame(value: unknown): value is { flow_id: string; step_id: string } {
  return typeof value === 'object' && value !== null && 'flow_id' in value && 'step_id' in value;
}
