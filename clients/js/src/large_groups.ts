// Large groups (PROTOCOL 9): their messages have no inbox rows; each comes
// by PUSH with inbox_seq 0, or by HISTORY. Per group the client keeps the
// highest conv_seq it holds without a gap (its cursor, persisted with the
// inbox seq), delivers a message that continues it, holds one above a gap,
// and fills a gap (or catches up after being offline) with HISTORY
// after_seq from the cursor.
//
// Pure state: the session does the requests.

import type { Message } from "./types.js";

const MAX_HELD = 1000; // per group; past it the held ones are dropped (HISTORY brings them again)

export class LargeGroups {
  // Per group, messages above the cursor waiting for the gap below them to
  // fill; null for one the inbox already gave (an event naming this user).
  private readonly held = new Map<string, Map<number, Message | null>>();

  /** `cursors` is the persisted record (gid -> conv_seq), changed in place. */
  constructor(private readonly cursors: Record<string, number>) {}

  /** The groups with a cursor (caught up after each login). */
  groups(): string[] {
    return Object.keys(this.cursors);
  }

  /** Whether a group's newest conv_seq (CONV_LIST) is past what is held. */
  behind(gid: string, lastConvSeq: number): boolean {
    const c = this.cursors[gid];
    return c !== undefined && c < lastConvSeq;
  }

  cursor(gid: string): number | undefined {
    return this.cursors[gid];
  }

  /**
   * The group became large at `fromSeq` (FANOUT_CHANGED, or an event that
   * added this user to a large group): its messages after `fromSeq - 1`
   * come by PUSH or HISTORY.
   */
  start(gid: string, fromSeq: number): void {
    const at = Math.max(0, fromSeq - 1);
    if (this.cursors[gid] === undefined || this.cursors[gid] < at) this.cursors[gid] = at;
  }

  /**
   * Messages of a large group (pushed or from HISTORY): returns those to
   * deliver now, in conv_seq order; `gap` is set when some wait for a
   * HISTORY from the cursor. A HISTORY page from the cursor covers every
   * conv_seq up to its newest message (`coveredTo`): one missing there is
   * not for this user (deleted for them, expired) and is stepped over.
   */
  offer(gid: string, messages: Message[], coveredTo = 0): { deliver: Message[]; gap: boolean } {
    if (messages.length === 0) return { deliver: [], gap: this.held.has(gid) };
    if (this.cursors[gid] === undefined) {
      // Pushed before the event that says where it starts: from here on.
      const first = Math.min(...messages.map((m) => m.convSeq));
      this.cursors[gid] = first - 1;
    }
    let held = this.held.get(gid);
    if (!held) {
      held = new Map();
      this.held.set(gid, held);
    }
    for (const m of messages) if (m.convSeq > this.cursors[gid] && !held.has(m.convSeq)) held.set(m.convSeq, m);
    return this.advance(gid, held, coveredTo);
  }

  /**
   * A message of group `gid` that came through the inbox (events that name
   * this user go to the inbox of a large group too, PROTOCOL 9): whether the
   * large-group path gave it already (`dup`: not to be given again), and the
   * held messages it lets through.
   */
  noteInbox(gid: string, convSeq: number): { dup: boolean; deliver: Message[] } {
    const cursor = this.cursors[gid];
    if (cursor === undefined) return { dup: false, deliver: [] };
    if (convSeq <= cursor) return { dup: true, deliver: [] };
    let held = this.held.get(gid);
    if (!held) {
      held = new Map();
      this.held.set(gid, held);
    }
    if (held.get(convSeq) === null) return { dup: true, deliver: [] };
    held.set(convSeq, null);
    return { dup: false, deliver: this.advance(gid, held, 0).deliver };
  }

  private advance(gid: string, held: Map<number, Message | null>, coveredTo: number): { deliver: Message[]; gap: boolean } {
    const deliver: Message[] = [];
    for (;;) {
      const at = this.cursors[gid] + 1;
      if (held.has(at)) {
        const next = held.get(at);
        held.delete(at);
        if (next) deliver.push(next); // null: the inbox gave it
      } else if (at > coveredTo) {
        break;
      }
      this.cursors[gid] = at;
    }
    if (held.size > MAX_HELD) held.clear();
    if (held.size === 0) this.held.delete(gid);
    return { deliver, gap: held.size > 0 };
  }
}
