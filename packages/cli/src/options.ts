/** Option parsers shared by the commands: each names the option and what it expected. */
import { InvalidArgumentError } from 'commander';

/** `--type user,bot`: a comma-separated list, empty entries dropped. */
export function list(value: string, previous: readonly string[] = []): string[] {
  return [
    ...previous,
    ...value
      .split(',')
      .map((item) => item.trim())
      .filter((item) => item !== ''),
  ];
}

/** A whole number of at least `min`. */
export function integer(min: number): (value: string) => number {
  return (value) => {
    const number = Number(value);
    if (!Number.isInteger(number) || number < min) {
      throw new InvalidArgumentError(`expected a whole number of at least ${min}, found "${value}"`);
    }
    return number;
  };
}

/** A number of seconds (Rasa's timestamps): float, as `rasa export` takes them. */
export function seconds(value: string): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number)) {
    throw new InvalidArgumentError(
      `expected a Unix timestamp in seconds (e.g. 1718964815.06), found "${value}"`,
    );
  }
  return number;
}

/** A duration in seconds, returned in milliseconds. */
export function timeoutMs(value: string): number {
  const number = Number(value);
  if (value.trim() === '' || !Number.isFinite(number) || number <= 0) {
    throw new InvalidArgumentError(`expected a number of seconds above 0, found "${value}"`);
  }
  return Math.round(number * 1000);
}
