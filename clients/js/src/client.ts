// ImClient: the session (session.ts) plus every call of PROTOCOL.md that a
// chat screen needs, and the conversation list kept current
// ("conversations" events).

import { ConnectionLost } from "./errors.js";
import { im } from "./gen/im.js";
import { Cmd } from "./header.js";
import { ConversationList, toConversation, type Conversation } from "./conversations.js";
import { ImSession, newClientMsgId, type ClientOptions, type SendResult } from "./session.js";
import { idString, num, toMessage, type Message } from "./types.js";

const v1 = im.v1;
const LIST_PAGE = 500;
const RELOAD_DELAY_MS = 150;
const WATCH_PAGE = 500; // PROTOCOL 8.5: at most 500 uids a request

export interface HistoryPage {
  messages: Message[];
  hasMore: boolean;
}

export interface HistoryOptions {
  /** Older than this conv_seq (0: the newest). */
  beforeSeq?: number;
  /** Newer than this conv_seq, paging forward (PROTOCOL 5). */
  afterSeq?: number;
  limit?: number;
}

export interface SearchOptions {
  /** With peer: search that conversation only (C2C or GROUP); else every one of the user's. */
  convType?: number;
  peer?: string;
  /** nextCursor of the page before. */
  cursor?: string;
  /** Default 20, at most 100. */
  limit?: number;
}

export interface SearchPage {
  /** Newest first, as HISTORY returns them. */
  messages: Message[];
  nextCursor: string;
  hasMore: boolean;
}

export interface EditOptions {
  clientMsgId?: string;
  /** What the edited message is found by (PROTOCOL 8.6); without it, by nothing. */
  searchText?: string;
}

export interface Group {
  gid: string;
  name: string;
  owner: string;
  announcement: string;
  createdMs: number;
  memberCount: number;
  large: boolean;
  largeFromSeq: number;
}

export interface GroupWithMembers {
  group: Group;
  members: string[];
  membersMore: boolean;
}

export interface Presence {
  uid: string;
  online: boolean;
  devices: number[];
  lastSeenMs: number;
}

export interface ReadCount {
  convSeq: number;
  readCount: number;
  memberCount: number;
}

export interface Receipts {
  counts: ReadCount[];
  readers: { uid: string; readSeq: number }[];
  readersMore: boolean;
}

export interface ClientOptionsWithList extends ClientOptions {
  /** Keep the conversation list (CONV_LIST at each login, then the inbox); true by default. */
  conversations?: boolean;
}

function toGroup(g: im.v1.IGroup | null | undefined): Group {
  return {
    gid: g?.gid ?? "",
    name: g?.name ?? "",
    owner: g?.owner ?? "",
    announcement: g?.announcement ?? "",
    createdMs: num(g?.createdMs as never),
    memberCount: g?.memberCount ?? 0,
    large: g?.large ?? false,
    largeFromSeq: num(g?.largeFromSeq as never),
  };
}

function toPresence(p: im.v1.IPresence): Presence {
  return { uid: p.uid ?? "", online: p.online ?? false, devices: p.devices ?? [], lastSeenMs: num(p.lastSeenMs as never) };
}

function bytes(body: Uint8Array | string): Uint8Array {
  return typeof body === "string" ? new TextEncoder().encode(body) : body;
}

function sendResult(f: { body: Uint8Array }): SendResult {
  const r = v1.SendResp.decode(f.body);
  return {
    msgId: idString(r.msgId as never),
    convSeq: num(r.convSeq as never),
    inboxSeq: num(r.inboxSeq as never),
    serverTimeMs: num(r.serverTimeMs as never),
    duplicate: r.duplicate,
  };
}

export class ImClient extends ImSession {
  private readonly list = new ConversationList();
  private readonly keepList: boolean;
  private reloading: Message[] | undefined;
  private reloadTimer: ReturnType<typeof setTimeout> | undefined;
  private emitTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly watched = new Set<string>();

  constructor(options: ClientOptionsWithList) {
    super(options);
    this.keepList = options.conversations ?? true;
    this.on("message", (m) => this.onInboxMessage(m));
  }

  // ------------------------------------------------------------ conversations

  /** The conversation list as last known (pinned first, newest activity first). */
  conversations(): Conversation[] {
    return this.list.list();
  }

  /** One conversation, if the user has it. */
  conversation(convType: number, peer: string): Conversation | undefined {
    return this.list.get(convType, peer);
  }

  /** The unread messages of every conversation that is not muted. */
  totalUnread(): number {
    return this.list.totalUnread();
  }

  /** Loads the whole list again (every CONV_LIST page). */
  async refreshConversations(): Promise<Conversation[]> {
    if (this.reloading) {
      // One listing at a time; the one under way may predate what asked.
      this.scheduleReload();
      return this.list.list();
    }
    this.reloading = [];
    try {
      const all: Conversation[] = [];
      let cursor = "";
      let inboxSeq = 0;
      let totalUnread: number | undefined;
      for (;;) {
        const f = await this.call(Cmd.CONV_LIST, v1.ConvListReq.encode({ cursor, limit: LIST_PAGE }).finish());
        const r = v1.ConvListResp.decode(f.body);
        if (inboxSeq === 0) inboxSeq = num(r.inboxSeq as never);
        totalUnread ??= r.totalUnread;
        for (const c of r.conversations) all.push(toConversation(c));
        if (!r.hasMore || !r.nextCursor) break;
        cursor = r.nextCursor;
      }
      const during = this.reloading;
      this.list.load(all, inboxSeq, totalUnread);
      // Messages delivered while the pages came: those after the listing.
      for (const m of during) this.list.apply(this.uid, m, true);
      for (const c of all) if (c.convType === v1.ConvType.GROUP) this.groupNewest(c.peer, c.lastConvSeq);
    } catch (e) {
      // The old list goes on, with what came meanwhile; listed again later.
      for (const m of this.reloading ?? []) this.list.apply(this.uid, m);
      if (!(e instanceof ConnectionLost)) this.list.markStale();
      throw e;
    } finally {
      this.reloading = undefined;
    }
    this.emitConversations();
    if (this.list.needsReload) this.scheduleReload();
    return this.list.list();
  }

  protected override afterResync(): void {
    if (this.keepList) this.refreshConversations().catch((e) => this.reportBackground(e));
    if (this.watched.size > 0) this.rewatch().catch((e) => this.reportBackground(e));
  }

  private onInboxMessage(m: Message): void {
    if (!this.keepList) return;
    if (this.reloading) {
      this.reloading.push(m);
      return;
    }
    if (!this.list.apply(this.uid, m)) return;
    if (this.list.needsReload) this.scheduleReload();
    else this.scheduleEmit();
  }

  private scheduleEmit(): void {
    if (this.emitTimer) return;
    this.emitTimer = setTimeout(() => {
      this.emitTimer = undefined;
      this.emitConversations();
    }, 0);
  }

  private emitConversations(): void {
    this.emit("conversations", this.list.list());
  }

  private scheduleReload(): void {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(() => {
      this.reloadTimer = undefined;
      if (this.state === "online") this.refreshConversations().catch((e) => this.reportBackground(e));
    }, RELOAD_DELAY_MS);
  }

  private reportBackground(e: unknown): void {
    if (!(e instanceof ConnectionLost)) this.emit("error", e as Error);
  }

  /** CONV_READ: moves the read position (0: to the newest); a receipt unless noReceipt. */
  async markRead(convType: number, peer: string, readSeq = 0, noReceipt = false) {
    const f = await this.call(Cmd.CONV_READ, v1.ConvReadReq.encode({ convType, peer, readSeq, noReceipt }).finish());
    const r = v1.ConvReadResp.decode(f.body);
    const result = { readSeq: num(r.readSeq as never), unreadCount: r.unreadCount, inboxSeq: num(r.inboxSeq as never) };
    this.ownRow(result.inboxSeq);
    const c = this.list.get(convType, peer);
    if (c && result.readSeq >= c.readSeq) {
      c.readSeq = result.readSeq;
      // A message newer than the answer may be counted already: then the server says.
      if (c.lastConvSeq <= result.readSeq) c.unreadCount = result.unreadCount;
      else this.scheduleReload();
      this.emitConversations();
    }
    return result;
  }

  /** CONV_UPDATE: muted, pinned, hidden (an absent one stays as it is). */
  async updateConversation(
    convType: number,
    peer: string,
    settings: { muted?: boolean; pinned?: boolean; hidden?: boolean },
  ): Promise<Conversation> {
    const f = await this.call(Cmd.CONV_UPDATE, v1.ConvUpdateReq.encode({ convType, peer, ...settings }).finish());
    const resp = v1.ConvUpdateResp.decode(f.body);
    this.ownRow(num(resp.inboxSeq as never));
    const c = toConversation(resp.conversation ?? {});
    const mine = this.list.get(convType, peer);
    c.hidden = settings.hidden ?? mine?.hidden ?? false;
    if (mine) {
      mine.muted = c.muted;
      mine.pinned = c.pinned;
      mine.hidden = c.hidden;
      this.emitConversations();
    }
    return c;
  }

  // ------------------------------------------------------------ messages

  /** HISTORY of one conversation: a page older than beforeSeq, or newer than afterSeq. */
  async history(convType: number, peer: string, o: HistoryOptions = {}): Promise<HistoryPage> {
    const f = await this.call(
      Cmd.HISTORY,
      v1.HistoryReq.encode({ convType, peer, beforeSeq: o.beforeSeq ?? 0, afterSeq: o.afterSeq ?? 0, limit: o.limit ?? 0 }).finish(),
    );
    const r = v1.HistoryResp.decode(f.body);
    return { messages: r.messages.map(toMessage), hasMore: r.hasMore };
  }

  /**
   * SEARCH the user's conversations (PROTOCOL 8.6): CJK text by any run of
   * characters, other scripts by whole words (`word*` a prefix), every word
   * required. One at a time per user: a second one before the first is
   * answered fails with RATE_LIMITED.
   */
  async search(query: string, o: SearchOptions = {}): Promise<SearchPage> {
    const req = {
      query,
      convType: o.convType ?? 0,
      peer: o.peer ?? '',
      cursor: o.cursor ?? '',
      limit: o.limit ?? 0,
    };
    const r = v1.SearchResp.decode((await this.call(Cmd.SEARCH, v1.SearchReq.encode(req).finish())).body);
    return {messages: r.messages.map(toMessage), nextCursor: r.nextCursor, hasMore: r.hasMore};
  }

  /** RECALL one's own message (or, as a group's owner, any). */
  async recall(convType: number, peer: string, convSeq: number, clientMsgId = newClientMsgId()): Promise<SendResult> {
    const r = sendResult(await this.call(Cmd.RECALL, v1.RecallReq.encode({ clientMsgId, convType, peer, convSeq }).finish()));
    this.ownRow(r.inboxSeq);
    return r;
  }

  /** EDIT one's own message; the last argument: a client_msg_id, or options. */
  async edit(
      convType: number,
      peer: string,
      convSeq: number,
      body: Uint8Array|string,
      options: string|EditOptions = {},
      ): Promise<SendResult> {
    const o = typeof options === 'string' ? {clientMsgId: options} : options;
    const req = {
      clientMsgId: o.clientMsgId ?? newClientMsgId(),
      convType,
      peer,
      convSeq,
      body: bytes(body),
      searchText: o.searchText ?? '',
    };
    const r = sendResult(await this.call(Cmd.EDIT, v1.EditReq.encode(req).finish()));
    this.ownRow(r.inboxSeq);
    return r;
  }

  /** DELETE for oneself: some conv_seqs and/or everything up to upToSeq. */
  async deleteMessages(convType: number, peer: string, o: { convSeqs?: number[]; upToSeq?: number }): Promise<number> {
    const f = await this.call(
      Cmd.DELETE,
      v1.DeleteReq.encode({ convType, peer, convSeqs: o.convSeqs ?? [], upToSeq: o.upToSeq ?? 0 }).finish(),
    );
    const seq = num(v1.DeleteResp.decode(f.body).inboxSeq as never);
    this.ownRow(seq);
    return seq;
  }

  /** RECEIPTS of a group's messages. */
  async receipts(
    gid: string,
    convSeqs: number[],
    o: { withReaders?: boolean; readersAfter?: string; readersLimit?: number } = {},
  ): Promise<Receipts> {
    const f = await this.call(Cmd.RECEIPTS, v1.ReceiptsReq.encode({ gid, convSeqs, ...o }).finish());
    const r = v1.ReceiptsResp.decode(f.body);
    return {
      counts: r.counts.map((c) => ({
        convSeq: num(c.convSeq as never),
        readCount: c.readCount ?? 0,
        memberCount: c.memberCount ?? 0,
      })),
      readers: r.readers.map((m) => ({ uid: m.uid ?? "", readSeq: num(m.readSeq as never) })),
      readersMore: r.readersMore,
    };
  }

  /** TYPING (TYPING, RECORDING or STOPPED); never stored. */
  async typing(convType: number, peer: string, state: number): Promise<void> {
    if (this.state !== "online") return; // nothing to say to anyone while offline
    await this.notify(Cmd.TYPING, v1.TypingReq.encode({ convType, peer, state }).finish());
  }

  // ------------------------------------------------------------ presence

  async presence(uids: string[]): Promise<Presence[]> {
    const f = await this.call(Cmd.PRESENCE, v1.PresenceReq.encode({ uids }).finish());
    return v1.PresenceResp.decode(f.body).presences.map(toPresence);
  }

  /** PRESENCE_WATCH: changes of the watched users come as "presence" events. */
  async watchPresence(o: { add?: string[]; remove?: string[]; clear?: boolean }): Promise<Presence[]> {
    const f = await this.call(
      Cmd.PRESENCE_WATCH,
      v1.PresenceWatchReq.encode({ add: o.add ?? [], remove: o.remove ?? [], clear: o.clear ?? false }).finish(),
    );
    // Kept, to be watched again on the next session (a watch lives as long as its session).
    if (o.clear) this.watched.clear();
    for (const u of o.remove ?? []) this.watched.delete(u);
    for (const u of o.add ?? []) this.watched.add(u);
    return v1.PresenceResp.decode(f.body).presences.map(toPresence);
  }

  /** The uids watched (sent again after every login). */
  watching(): string[] {
    return [...this.watched];
  }

  private async rewatch(): Promise<void> {
    const all = [...this.watched];
    for (let i = 0; i < all.length; i += WATCH_PAGE) {
      const f = await this.call(
        Cmd.PRESENCE_WATCH,
        v1.PresenceWatchReq.encode({ add: all.slice(i, i + WATCH_PAGE), clear: i === 0 }).finish(),
      );
      // The state now: changes while offline were not pushed.
      this.emit("presence", v1.PresenceResp.decode(f.body).presences);
    }
  }

  // ------------------------------------------------------------ groups

  async createGroup(o: { gid?: string; name: string; members: string[]; announcement?: string }): Promise<GroupWithMembers> {
    const f = await this.call(
      Cmd.GROUP_CREATE,
      v1.GroupCreateReq.encode({ gid: o.gid ?? "", name: o.name, members: o.members, announcement: o.announcement ?? "" }).finish(),
    );
    const r = v1.GroupResp.decode(f.body);
    return { group: toGroup(r.group), members: r.members, membersMore: r.membersMore };
  }

  async getGroup(gid: string, o: { withMembers?: boolean; membersAfter?: string; membersLimit?: number } = {}) {
    const f = await this.call(Cmd.GROUP_GET, v1.GroupGetReq.encode({ gid, ...o }).finish());
    const r = v1.GroupResp.decode(f.body);
    return { group: toGroup(r.group), members: r.members, membersMore: r.membersMore } as GroupWithMembers;
  }

  async listGroups(): Promise<Group[]> {
    const f = await this.call(Cmd.GROUP_LIST, new Uint8Array(0));
    return v1.GroupListResp.decode(f.body).groups.map(toGroup);
  }

  async addMembers(gid: string, uids: string[]) {
    const f = await this.call(Cmd.GROUP_ADD_MEMBERS, v1.GroupMembersReq.encode({ gid, uids }).finish());
    const r = v1.GroupMembersResp.decode(f.body);
    return { changed: r.changed, memberCount: r.memberCount };
  }

  async removeMembers(gid: string, uids: string[]) {
    const f = await this.call(Cmd.GROUP_REMOVE_MEMBERS, v1.GroupMembersReq.encode({ gid, uids }).finish());
    const r = v1.GroupMembersResp.decode(f.body);
    return { changed: r.changed, memberCount: r.memberCount };
  }

  async leaveGroup(gid: string): Promise<void> {
    await this.call(Cmd.GROUP_LEAVE, v1.GroupIdReq.encode({ gid }).finish());
  }

  async dismissGroup(gid: string): Promise<void> {
    await this.call(Cmd.GROUP_DISMISS, v1.GroupIdReq.encode({ gid }).finish());
  }

  async updateGroup(gid: string, o: { name?: string; announcement?: string }): Promise<Group> {
    const f = await this.call(Cmd.GROUP_UPDATE, v1.GroupUpdateReq.encode({ gid, ...o }).finish());
    return toGroup(v1.GroupResp.decode(f.body).group);
  }
}
