import { statusName, type StatusName } from "./header.js";

/**
 * The longest delay the client takes from the server (retry_after_ms,
 * reconnect_after_ms, Retry-After): one hour. A larger (or garbled) value
 * is cut to it; without the cut, setTimeout would turn anything above 2^31
 * ms into an immediate retry.
 */
export const MAX_SERVER_DELAY_MS = 3600_000;

export function serverDelay(ms: number): number {
  return Number.isFinite(ms) && ms > 0 ? Math.min(ms, MAX_SERVER_DELAY_MS) : 0;
}

/** A request the server refused: the protocol status, its name and message. */
export class ImError extends Error {
  readonly status: number;
  readonly statusName: StatusName | "UNKNOWN";
  /** Set for RATE_LIMITED and UNAVAILABLE: when to try again. */
  readonly retryAfterMs: number;

  constructor(status: number, message: string, retryAfterMs = 0) {
    super(`${statusName(status)}: ${message}`);
    this.name = "ImError";
    this.status = status;
    this.statusName = statusName(status);
    this.retryAfterMs = serverDelay(retryAfterMs);
  }
}

/** The connection went away before the answer came (the request may or may not have taken effect). */
export class ConnectionLost extends Error {
  constructor(message = "the connection was lost before the answer") {
    super(message);
    this.name = "ConnectionLost";
  }
}

/** The client was closed (close(), or a kickout after which it does not reconnect). */
export class ClientClosed extends Error {
  constructor(message = "the client is closed") {
    super(message);
    this.name = "ClientClosed";
  }
}

/**
 * A send left unanswered for longer than the outbox keeps it (ClientOptions
 * outboxMaxAgeMs, below the server's dedupe window): sending it again could
 * store it twice, so it is given up. It may or may not have been stored.
 */
export class SendExpired extends Error {
  readonly clientMsgId: string;
  constructor(clientMsgId: string, ageMs: number) {
    super(`send ${clientMsgId} unanswered for ${Math.round(ageMs / 1000)} s: given up (it may have been stored)`);
    this.name = "SendExpired";
    this.clientMsgId = clientMsgId;
  }
}
