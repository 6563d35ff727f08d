/**
 * What a broker says about itself: connects, reconnects, retries, dead letters, drains. One small logger shape,
 * which pino, winston, bunyan and `console` all satisfy, so any of them can be passed as `logger`.
 */

/** A logger: pino, winston, `console`, or any object with these methods. Every message starts `[parley]`. */
export interface Logger {
  debug?(message: string): void;
  info?(message: string): void;
  warn?(message: string): void;
  error?(message: string): void;
}

/** The levels core writes at, every one always present. */
export interface Log {
  debug(message: string): void;
  info(message: string): void;
  warn(message: string): void;
  error(message: string): void;
}

/**
 * Turns the broker options into a `Log`. Warnings and errors go to `logger`, or `onWarning`, or
 * `process.emitWarning` (so a dead letter is visible by default); debug and info go to `logger`, and to stderr when
 * `PARLEY_DEBUG` is set (`PARLEY_DEBUG=1 node app.js`).
 */
export function makeLog(options: {
  readonly logger?: Logger;
  readonly onWarning?: (m: string) => void;
}): Log {
  const { logger, onWarning } = options;
  const debugging = /^(1|true|yes|on|debug)$/i.test(process.env.PARLEY_DEBUG ?? '');
  const stderr = (message: string) => void process.stderr.write(`${message}\n`);
  const fallbackWarn = (message: string) => process.emitWarning(message, 'ParleyWarning');
  const warn = onWarning ?? (logger?.warn ? (m: string) => logger.warn!(m) : fallbackWarn);
  const quiet = (level: 'debug' | 'info') => {
    const method = logger?.[level];
    if (method) return (m: string) => method.call(logger, m);
    return debugging ? stderr : () => {};
  };
  return {
    debug: quiet('debug'),
    info: quiet('info'),
    warn,
    error: logger?.error ? (m: string) => logger.error!(m) : warn,
  };
}
