// The conversation list (PROTOCOL 8.1) kept current on the client: loaded
// by CONV_LIST, then moved by every inbox message the session delivers
// after the listing's inbox_seq (new messages, read marks, settings,
// recalls, deletes). Where a message alone cannot say the exact unread
// count (a read mark below the newest message, a delete, a recall of an
// unread message), the list asks to be loaded again; the server's count is
// exact, so every device converges on it.
//
// Pure state: no I/O.

import { im } from "./gen/im.js";
import { num, toMessage, type Message } from "./types.js";

const v1 = im.v1;
const READ_MARK = 10006;
const DELETE_MARK = 10007;
const SETTINGS_MARK = 10008;
const RECALL = 10003;

export interface Conversation {
  convType: number;
  peer: string;
  lastMessage: Message | undefined;
  lastConvSeq: number;
  readSeq: number;
  unreadCount: number;
  peerReadSeq: number;
  muted: boolean;
  pinned: boolean;
  hidden: boolean;
  activityMs: number;
  clearedSeq: number;
}

export function conversationKey(convType: number, peer: string): string {
  return `${convType}:${peer}`;
}

export function toConversation(c: im.v1.IConversation): Conversation {
  return {
    convType: c.convType ?? 0,
    peer: c.peer ?? "",
    lastMessage: c.lastMessage ? toMessage(c.lastMessage) : undefined,
    lastConvSeq: num(c.lastConvSeq as never),
    readSeq: num(c.readSeq as never),
    unreadCount: c.unreadCount ?? 0,
    peerReadSeq: num(c.peerReadSeq as never),
    muted: c.muted ?? false,
    pinned: c.pinned ?? false,
    hidden: false,
    activityMs: num(c.activityMs as never),
    clearedSeq: num(c.clearedSeq as never),
  };
}

/** The peer a message's conversation has from `me`'s side (PROTOCOL 8). */
export function peerOf(me: string, m: { convType: number; from: string; to: string }): string {
  if (m.convType === v1.ConvType.GROUP) return m.to;
  if (m.convType === v1.ConvType.SYSTEM) return "";
  return m.from === me ? m.to : m.from;
}

export class ConversationList {
  private readonly byKey = new Map<string, Conversation>();
  private listedInboxSeq = 0;
  private stale = false;
  // Unread messages of conversations the listing left out (hidden ones):
  // the server's total_unread counts them.
  private unlistedUnread = 0;

  /**
   * Replaces everything with a complete listing (all its pages);
   * `totalUnread` is its total_unread (undefined: none known).
   */
  load(conversations: Conversation[], inboxSeq: number, totalUnread?: number): void {
    this.byKey.clear();
    for (const c of conversations) this.byKey.set(conversationKey(c.convType, c.peer), c);
    this.listedInboxSeq = inboxSeq;
    this.stale = false;
    this.unlistedUnread = 0;
    if (totalUnread !== undefined) this.unlistedUnread = Math.max(0, totalUnread - this.totalUnread());
  }

  /** Whether only a new listing can give exact counts now. */
  get needsReload(): boolean {
    return this.stale;
  }

  /** Something outside the messages says the counts may be off. */
  markStale(): void {
    this.stale = true;
  }

  /** The inbox seq the listing reflects; later messages are applied on top. */
  get inboxSeq(): number {
    return this.listedInboxSeq;
  }

  get(convType: number, peer: string): Conversation | undefined {
    return this.byKey.get(conversationKey(convType, peer));
  }

  /** Pinned first, then the newest activity; hidden ones left out. */
  list(): Conversation[] {
    return [...this.byKey.values()]
      .filter((c) => !c.hidden && c.lastConvSeq > 0)
      .sort((a, b) => {
        if (a.pinned !== b.pinned) return a.pinned ? -1 : 1;
        if (a.activityMs !== b.activityMs) return b.activityMs - a.activityMs;
        return conversationKey(a.convType, a.peer) < conversationKey(b.convType, b.peer) ? -1 : 1;
      });
  }

  /** The sum of the unread counts of the conversations that are not muted (hidden ones too). */
  totalUnread(): number {
    let n = this.unlistedUnread;
    for (const c of this.byKey.values()) if (!c.muted) n += c.unreadCount;
    return n;
  }

  /**
   * One inbox message of `me`; returns whether the list changed. With
   * `onlyNewer` a message at or below its conversation's newest conv_seq is
   * taken as counted already (messages that came while a listing of several
   * pages was read: its later pages may hold them).
   */
  apply(me: string, m: Message, onlyNewer = false): boolean {
    const peer = peerOf(me, m);
    const key = conversationKey(m.convType, peer);
    let c = this.byKey.get(key);
    if (m.inboxSeq === 0) {
      // A large group's message (PROTOCOL 9): no inbox seq; new when above the newest held.
      if (m.convType !== v1.ConvType.GROUP || (c && m.convSeq <= c.lastConvSeq)) return false;
    } else {
      if (m.inboxSeq <= this.listedInboxSeq) return false;
      this.listedInboxSeq = m.inboxSeq;
      if (m.convSeq === 0) return this.applyMark(me, m);
    }
    if (!c) {
      // A conversation the listing left out (hidden) that held messages
      // before this one: only the server knows how many are unread.
      if (m.convSeq > 1) this.stale = true;
      c = {
        convType: m.convType,
        peer,
        lastMessage: undefined,
        lastConvSeq: 0,
        readSeq: 0,
        unreadCount: 0,
        peerReadSeq: 0,
        muted: false,
        pinned: false,
        hidden: false,
        activityMs: 0,
        clearedSeq: 0,
      };
      this.byKey.set(key, c);
    }
    if (onlyNewer && m.convSeq > 0 && m.convSeq <= c.lastConvSeq) return false;
    if (m.convSeq >= c.lastConvSeq) {
      c.lastConvSeq = m.convSeq;
      c.lastMessage = m;
      c.activityMs = m.serverTimeMs;
    }
    c.hidden = false;
    if (m.contentType === RECALL) {
      // The recalled message may have been counted: the server knows.
      if (c.unreadCount > 0) this.stale = true;
      return true;
    }
    if (m.contentType >= 10000 || m.convType === v1.ConvType.SYSTEM) return true;
    if (m.from === me) {
      // Sending counts as reading.
      c.readSeq = Math.max(c.readSeq, m.convSeq);
      if (c.readSeq >= c.lastConvSeq) c.unreadCount = 0;
      else this.stale = true;
      return true;
    }
    if (m.convType === v1.ConvType.C2C) c.peerReadSeq = Math.max(c.peerReadSeq, m.convSeq);
    if (m.convSeq > c.readSeq && m.convSeq > c.clearedSeq) c.unreadCount += 1;
    return true;
  }

  private applyMark(me: string, m: Message): boolean {
    if (m.contentType === READ_MARK) {
      const r = v1.ReadMark.decode(m.body);
      const c = this.get(r.convType, r.peer);
      if (!c) return false;
      if (r.reader === me) {
        c.readSeq = Math.max(c.readSeq, num(r.readSeq as never));
        if (c.readSeq >= c.lastConvSeq) c.unreadCount = 0;
        else this.stale = true;
      } else {
        c.peerReadSeq = Math.max(c.peerReadSeq, num(r.readSeq as never));
      }
      return true;
    }
    if (m.contentType === SETTINGS_MARK) {
      const s = v1.ConvSettings.decode(m.body);
      const c = this.get(s.convType, s.peer);
      if (!c) {
        this.stale = true;
        return false;
      }
      c.muted = s.muted;
      c.pinned = s.pinned;
      c.hidden = s.hidden;
      return true;
    }
    if (m.contentType === DELETE_MARK) {
      // Deleted messages leave the counts and may have been the newest.
      this.stale = true;
      return true;
    }
    return false;
  }
}
