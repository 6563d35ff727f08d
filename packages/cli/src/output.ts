/**
 * Where output goes: data on stdout (events, tables), everything about the run on stderr. Colour and progress
 * only at a terminal: piped, redirected, with `NO_COLOR` set or `TERM=dumb`, output is plain lines.
 */
import cliProgress from 'cli-progress';

interface Stream {
  readonly isTTY?: boolean;
  write(text: string): unknown;
}

/** Whether a stream is a terminal that takes colour and redrawn status lines. */
export function isInteractive(stream: Stream): boolean {
  const noColor = process.env.NO_COLOR;
  return stream.isTTY === true && (noColor === undefined || noColor === '') && process.env.TERM !== 'dumb';
}

const CODES = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
};
export type Style = keyof typeof CODES;

/** Styles text for a stream: ANSI codes at a terminal, the text unchanged anywhere else. */
export function styler(stream: Stream): (style: Style, text: string) => string {
  if (!isInteractive(stream)) return (_style, text) => text;
  return (style, text) => `\u001b[${CODES[style][0]}m${text}\u001b[${CODES[style][1]}m`;
}

/** A line about the run, on stderr. */
export function note(message: string): void {
  process.stderr.write(`[parley] ${message}\n`);
}

/** Progress of a long command: a redrawn status line on a terminal (count, rate, ETA), nothing otherwise. */
export interface Progress {
  /** The count so far. */
  update(count: number): void;
  /** Removes the status line. */
  stop(): void;
}

/**
 * A status line on stderr while stderr is a terminal: `label count/total rate/s ETA` when the total is known,
 * `label count rate/s` when it is not. Piped or with NO_COLOR it prints nothing.
 */
export function progress(label: string, total?: number): Progress {
  if (!isInteractive(process.stderr)) return { update() {}, stop() {} };
  const started = Date.now();
  const format =
    total === undefined
      ? `${label} {value} events | {rate}/s | {duration_formatted}`
      : `${label} [{bar}] {value}/{total} | {rate}/s | ETA {eta_formatted}`;
  const bar = new cliProgress.SingleBar(
    { format, stream: process.stderr, hideCursor: true, clearOnComplete: true, fps: 5, etaBuffer: 50 },
    cliProgress.Presets.shades_classic,
  );
  bar.start(total ?? 0, 0, { rate: '0' });
  let stopped = false;
  return {
    update(count) {
      if (stopped) return;
      const seconds = (Date.now() - started) / 1000;
      const rate = seconds > 0 ? Math.round(count / seconds).toLocaleString('en-US') : '0';
      bar.update(count, { rate });
    },
    stop() {
      if (stopped) return;
      stopped = true;
      bar.stop();
    },
  };
}
