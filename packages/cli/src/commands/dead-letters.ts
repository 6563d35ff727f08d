/**
 * `parley dead-letters list | show ID | redrive (--all | ID…)`: a group's dead letters, read and redriven through
 * the broker contract (`broker.deadLetters(group)`, `broker.redrive()`), the same on every broker that keeps
 * them (`capabilities.redrive`).
 */
import type { Broker, StoredDeadLetter } from '@parley/core';
import { Command } from 'commander';
import { connected, DEFAULT_ENDPOINTS, openBroker, timeoutOption } from '../broker.js';
import { CliError, UsageError } from '../exit.js';
import { note, styler } from '../output.js';

interface GroupOptions {
  readonly endpoints: string;
  readonly timeout: number;
  readonly group?: string;
  readonly json?: boolean;
}

export function deadLettersCommand(): Command {
  const command = new Command('dead-letters').description(
    "list, show and redrive a consumer group's dead letters (brokers that keep them: capabilities.redrive)",
  );
  const common = (sub: Command) =>
    sub
      .option('--endpoints <path>', "Rasa's endpoints.yml", DEFAULT_ENDPOINTS)
      .addOption(timeoutOption())
      .option('--group <name>', "the consumer group (default: the broker's default group)");
  command.addCommand(
    common(new Command('list'))
      .description('one line per dead letter: id, reason, attempts, age, sender and error')
      .option('--json', 'one dead letter per line as JSON (the body as text)')
      .action(async (options: GroupOptions) => {
        await withLetters(options, async (letters) => {
          if (options.json) {
            for (const letter of letters) process.stdout.write(`${JSON.stringify(asJson(letter))}\n`);
          } else printTable(letters);
        });
      }),
  );
  command.addCommand(
    common(new Command('show'))
      .description('everything about one dead letter: why, when, its headers and its original body')
      .argument('<id>', 'the id `list` shows')
      .option('--json', 'as JSON')
      .action(async (id: string, options: GroupOptions) => {
        await withLetters(options, async (letters, group) => {
          const letter = letters.find((l) => l.id === id);
          if (!letter) throw new CliError(`no dead letter "${id}" in ${group}`);
          process.stdout.write(
            options.json ? `${JSON.stringify(asJson(letter), null, 2)}\n` : describe(letter),
          );
        });
      }),
  );
  command.addCommand(
    common(new Command('redrive'))
      .description('send dead letters back to their group, unchanged, and remove them from the dead letters')
      .argument('[ids...]', 'the dead letters to redrive (ids from `list`)')
      .option('--all', 'every dead letter of the group')
      .action(async (ids: string[], options: GroupOptions & { readonly all?: boolean }) => {
        if (options.all && ids.length > 0)
          throw new UsageError('redrive: give either --all or ids, not both');
        if (!options.all && ids.length === 0) {
          throw new UsageError(
            'redrive: name the dead letters to redrive (ids from `parley dead-letters list`), or --all',
          );
        }
        await withLetters(options, async (letters, group, broker) => {
          const missing = ids.filter((id) => !letters.some((l) => l.id === id));
          if (missing.length > 0) {
            throw new CliError(
              `no dead letter ${missing.map((id) => `"${id}"`).join(', ')} in ${group}: nothing redriven`,
            );
          }
          const chosen = options.all ? letters.map((l) => l.id) : ids;
          if (chosen.length === 0) {
            note(`no dead letters in ${group}: nothing to redrive`);
            return;
          }
          const { redriven } = await broker.redrive({
            ...(options.group === undefined ? {} : { group: options.group }),
            ids: chosen,
          });
          note(
            `redrove ${redriven} of ${chosen.length} dead letter${chosen.length === 1 ? '' : 's'} to ${group}`,
          );
          if (redriven < chosen.length)
            throw new CliError(`${chosen.length - redriven} dead letters were not redriven`);
        });
      }),
  );
  return command;
}

/** Opens the broker, checks it keeps dead letters, and hands over the group's. */
async function withLetters(
  options: GroupOptions,
  body: (letters: readonly StoredDeadLetter[], group: string, broker: Broker) => Promise<void>,
): Promise<void> {
  const { broker } = await openBroker(options.endpoints);
  try {
    if (!broker.capabilities.redrive) {
      throw new UsageError(
        `the ${broker.name} broker keeps no dead letters Parley can list or redrive (capabilities.redrive is false); use the broker's own tools`,
      );
    }
    await connected(broker, options.timeout);
    const letters = await broker.deadLetters(options.group);
    const group = options.group === undefined ? 'the default group' : `group "${options.group}"`;
    await body(letters, group, broker);
  } finally {
    await broker.close({ timeoutMs: 10_000 }).catch(() => {});
  }
}

function printTable(letters: readonly StoredDeadLetter[]): void {
  if (letters.length === 0) {
    note('no dead letters');
    return;
  }
  const style = styler(process.stdout);
  const now = Date.now();
  const rows = letters.map((l) => [
    l.id,
    l.reason,
    String(l.attempts),
    age(now - l.failedAt),
    l.senderId ?? '-',
    oneLine(l.error.message),
  ]);
  const header = ['ID', 'REASON', 'ATTEMPTS', 'AGE', 'SENDER', 'ERROR'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells.map((cell, i) => (i === cells.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ');
  process.stdout.write(`${style('bold', line(header))}\n`);
  for (const row of rows) process.stdout.write(`${line(row)}\n`);
}

function describe(l: StoredDeadLetter): string {
  const headers = Object.entries(l.headers);
  return [
    `id:          ${l.id}`,
    `message id:  ${l.messageId}`,
    `group:       ${l.group}`,
    `destination: ${l.destination}`,
    `sender:      ${l.senderId ?? '-'}`,
    `reason:      ${l.reason}`,
    `error:       ${l.error.name}${l.error.code ? ` (${l.error.code})` : ''}: ${l.error.message}`,
    `attempts:    ${l.attempts}`,
    `failed at:   ${new Date(l.failedAt).toISOString()} (${age(Date.now() - l.failedAt)} ago)`,
    `headers:     ${headers.length === 0 ? '-' : headers.map(([k, v]) => `${k}=${v}`).join(', ')}`,
    `body:        ${bodyText(l.body)}`,
    '',
  ].join('\n');
}

function asJson(l: StoredDeadLetter): Record<string, unknown> {
  const { body, ...rest } = l;
  return { ...rest, body: bodyText(body) };
}

function bodyText(body: Uint8Array): string {
  return Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8');
}

function oneLine(text: string): string {
  const flat = text.replace(/\s+/g, ' ');
  return flat.length > 100 ? `${flat.slice(0, 99)}…` : flat;
}

/** `42s`, `5m`, `3h`, `2d`. */
export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}
