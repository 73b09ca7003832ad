// Reconnect delays: exponential backoff with full jitter (a random delay
// between 0 and min(max, base * 2^attempt)), so clients cut off together
// do not all come back together.

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 500, maxMs: 30_000 };

export function backoffDelay(attempt: number, o: BackoffOptions = DEFAULT_BACKOFF, random = Math.random): number {
  const ceiling = Math.min(o.maxMs, o.baseMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * ceiling);
}
