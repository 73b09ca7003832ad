// What the application sees: plain objects, 64-bit ids as decimal strings
// (a msg_id does not fit a JavaScript number), sequences as numbers.

import type { im } from "./gen/im.js";

type Int64 = number | { toString(): string; toNumber?(): number } | null | undefined;

export interface Message {
  msgId: string;
  convType: number;
  from: string;
  to: string;
  convSeq: number;
  inboxSeq: number;
  clientMsgId: string;
  contentType: number;
  body: Uint8Array;
  serverTimeMs: number;
  topic: string;
  editVersion: number;
  editedMs: number;
}

export function num(v: Int64): number {
  if (v === null || v === undefined) return 0;
  if (typeof v === "number") return v;
  return v.toNumber ? v.toNumber() : Number(v.toString());
}

export function idString(v: Int64): string {
  if (v === null || v === undefined) return "0";
  return v.toString();
}

export function toMessage(m: im.v1.IMessage): Message {
  return {
    msgId: idString(m.msgId as Int64),
    convType: m.convType ?? 0,
    from: m.from ?? "",
    to: m.to ?? "",
    convSeq: num(m.convSeq as Int64),
    inboxSeq: num(m.inboxSeq as Int64),
    clientMsgId: m.clientMsgId ?? "",
    contentType: m.contentType ?? 0,
    body: m.body ?? new Uint8Array(0),
    serverTimeMs: num(m.serverTimeMs as Int64),
    topic: m.topic ?? "",
    editVersion: m.editVersion ?? 0,
    editedMs: num(m.editedMs as Int64),
  };
}

/** A message body as text (UTF-8). */
export function text(m: { body: Uint8Array }): string {
  return new TextDecoder().decode(m.body);
}
