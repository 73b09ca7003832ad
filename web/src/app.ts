// The web chat page: a small application on the TypeScript SDK
// (clients/js), bundled by esbuild into web/public/app.js and served by
// imserver from server.web_root (docs/web.md).

import {
  ImClient,
  IndexedDBStorage,
  MemoryStorage,
  ImError,
  im,
  text,
  type Message,
} from "../../clients/js/src/index.js";

const { ConvType, TypingState, GroupEventType } = im.v1;
const RECALL = 10003;
const EDIT = 10004;
const RECALLED = 10005;
const GROUP_EVENT = 10001;
const PAGE = 30;
const TYPING_EVERY_MS = 3000;

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`no #${id}`);
  return el;
}
const input = (id: string) => $(id) as HTMLInputElement;

interface Open {
  convType: number;
  peer: string;
  messages: Map<number, Message>; // by conv_seq
  oldest: number;
  hasOlder: boolean;
  readCounts: Map<number, number>;
  memberCount: number;
}

let client: ImClient | undefined;
let me = "";
// The token the client logs in with; when the server refuses or expires it,
// the login form asks for a new one and the client waits for it.
let currentToken = "";
let tokenWanted: { promise: Promise<string>; resolve: (t: string) => void } | undefined;
let open: Open | undefined;
const presence = new Map<string, boolean>();
const groupNames = new Map<string, string>();
const typingUntil = new Map<string, { from: string; until: number }>();
let lastTypingSent = 0;
let receiptsTimer: ReturnType<typeof setInterval> | undefined;

function key(convType: number, peer: string): string {
  return `${convType}:${peer}`;
}

function title(convType: number, peer: string): string {
  return convType === ConvType.GROUP ? `# ${groupNames.get(peer) || peer}` : peer;
}

async function refreshGroups(): Promise<void> {
  if (!client || client.state !== "online") return;
  for (const g of await client.listGroups()) groupNames.set(g.gid, g.name);
  renderConversations();
  renderHead();
}

function peerFor(m: Message): string {
  if (m.convType === ConvType.GROUP) return m.to;
  return m.from === me ? m.to : m.from;
}

function describe(m: Message | undefined): string {
  if (!m) return "";
  if (m.contentType === RECALLED) return "(recalled)";
  if (m.contentType === RECALL) return "a message was recalled";
  if (m.contentType === EDIT) return "a message was edited";
  if (m.contentType === GROUP_EVENT) return groupEventText(m);
  if (m.contentType >= 10000) return "";
  return text(m);
}

function groupEventText(m: Message): string {
  let e: im.v1.GroupEvent;
  try {
    e = im.v1.GroupEvent.decode(m.body);
  } catch {
    return "(unreadable group event)";
  }
  const who = e.uids.join(", ");
  switch (e.type) {
    case GroupEventType.CREATED:
      return `${e.actor} created the group${who ? ` with ${who}` : ""}`;
    case GroupEventType.MEMBERS_ADDED:
      return `${e.actor} added ${who}`;
    case GroupEventType.MEMBERS_REMOVED:
      return `${e.actor} removed ${who}`;
    case GroupEventType.MEMBER_LEFT:
      return `${e.actor} left`;
    case GroupEventType.UPDATED:
      return `${e.actor} updated the group`;
    case GroupEventType.DISMISSED:
      return `${e.actor} dismissed the group`;
    default:
      return "group changed";
  }
}

// ------------------------------------------------------------ login

async function login(uid: string, token: string): Promise<void> {
  // One client at a time: a second "Log in" replaces the first.
  const previous = client;
  client = undefined;
  await previous?.close();
  resetView();
  me = uid;
  currentToken = token;
  tokenWanted = undefined;
  const storage = "indexedDB" in globalThis ? new IndexedDBStorage() : new MemoryStorage();
  const c = new ImClient({
    url: `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`,
    uid,
    token: (reason) => (reason === "login" ? currentToken || "dev" : askForToken(reason)),
    storage,
    deviceId: deviceId(),
  });
  client = c;
  c.on("state", (s) => {
    const el = $("conn");
    el.textContent = s;
    el.className = `conn ${s}`;
  });
  c.on("conversations", () => {
    renderConversations();
    renderMessages(true); // receipts (peer_read_seq) come with the list
  });
  c.on("message", (m) => onMessage(m));
  c.on("typing", (t) => {
    const convKey = key(t.convType ?? 0, t.convType === ConvType.GROUP ? t.peer ?? "" : t.from ?? "");
    if (t.state === TypingState.STOPPED) typingUntil.delete(convKey);
    else typingUntil.set(convKey, { from: t.from ?? "", until: Date.now() + (t.expiresMs || 5000) });
    renderTyping();
  });
  c.on("presence", (ps) => {
    for (const p of ps) presence.set(p.uid ?? "", p.online ?? false);
    renderConversations();
    renderHead();
  });
  let lastError = "";
  let kickText = "";
  c.on("error", (e) => (lastError = e.message));
  c.on("kicked", (k) => {
    if (!k.reconnects) kickText = `Logged out: ${k.message || "signed in elsewhere"}`;
  });
  c.on("state", (s) => {
    // Before the first login the form says how it goes (a server down, backoff);
    // while it asks for a new token, it keeps saying why.
    if (client === c && !($("login") as HTMLElement).hidden && s !== "closed" && !tokenWanted)
      $("login-error").textContent = s === "online" ? "" : `${s}…${lastError ? ` (${lastError})` : ""}`;
    // Closed by the server's side (a kickout, a token refused twice): log in again.
    if (s !== "closed" || client !== c) return;
    tokenWanted = undefined;
    showLogin(kickText || `Disconnected${lastError ? `: ${lastError}` : ""}`);
  });
  await c.connect();
  sessionStorage.setItem("im.uid", uid);
  sessionStorage.setItem("im.token", token);
  $("me").textContent = uid;
  ($("login") as HTMLElement).hidden = true;
  ($("app") as HTMLElement).hidden = false;
  await c.refreshConversations();
  await refreshGroups();
  renderConversations();
}

/** The server refused or expired the token: the login form asks for a new one. */
function askForToken(reason: string): Promise<string> {
  if (!tokenWanted) {
    let resolve!: (t: string) => void;
    const promise = new Promise<string>((r) => (resolve = r));
    tokenWanted = { promise, resolve };
    input("login-uid").value = me;
    input("login-token").value = "";
    showLogin(reason === "expired" ? "Your token expired: enter a new one." : "The server refused the token: enter a new one.");
  }
  return tokenWanted.promise;
}

/** Forgets what the previous user of this tab saw. */
function resetView(): void {
  open = undefined;
  presence.clear();
  watched.clear();
  groupNames.clear();
  typingUntil.clear();
  if (receiptsTimer) clearInterval(receiptsTimer);
  receiptsTimer = undefined;
  ($("chat") as HTMLElement).hidden = true;
  $("message-list").replaceChildren();
  $("conversations").replaceChildren();
  $("chat-error").textContent = "";
}

function deviceId(): string {
  let id = localStorage.getItem("im.device");
  if (!id) {
    id = `web-${Math.random().toString(36).slice(2, 10)}`;
    localStorage.setItem("im.device", id);
  }
  return id;
}

function showLogin(error = ""): void {
  ($("app") as HTMLElement).hidden = true;
  ($("login") as HTMLElement).hidden = false;
  $("login-error").textContent = error;
}

// ------------------------------------------------------------ conversation list

function renderConversations(): void {
  if (!client) return;
  const list = $("conversations");
  list.replaceChildren();
  const watch: string[] = [];
  for (const c of client.conversations()) {
    const li = document.createElement("li");
    li.dataset.testid = `conv-${c.peer}`;
    if (open && key(open.convType, open.peer) === key(c.convType, c.peer)) li.classList.add("active");
    const dot = document.createElement("span");
    dot.className = "dot";
    if (c.convType === ConvType.C2C) {
      watch.push(c.peer);
      if (presence.get(c.peer)) dot.classList.add("online");
    } else dot.classList.add("group");
    const name = document.createElement("span");
    name.className = "name";
    name.textContent = title(c.convType, c.peer);
    const last = document.createElement("span");
    last.className = "last";
    last.textContent = describe(c.lastMessage);
    li.append(dot, name, last);
    if (c.unreadCount > 0) {
      const badge = document.createElement("span");
      badge.className = c.muted ? "badge muted" : "badge";
      badge.dataset.testid = `unread-${c.peer}`;
      badge.textContent = String(c.unreadCount);
      li.append(badge);
    }
    li.onclick = () => void openConversation(c.convType, c.peer);
    list.append(li);
  }
  $("total-unread").textContent = String(client.totalUnread());
  void watchPeers(watch);
}

const watched = new Set<string>();
async function watchPeers(peers: string[]): Promise<void> {
  const add = peers.filter((p) => !watched.has(p)).slice(0, 100);
  if (!client || add.length === 0 || client.state !== "online") return;
  for (const p of add) watched.add(p);
  try {
    for (const p of await client.watchPresence({ add })) presence.set(p.uid, p.online);
    renderConversations();
  } catch {
    for (const p of add) watched.delete(p);
  }
}

// ------------------------------------------------------------ one conversation

async function openConversation(convType: number, peer: string): Promise<void> {
  if (!client) return;
  open = { convType, peer, messages: new Map(), oldest: 0, hasOlder: false, readCounts: new Map(), memberCount: 0 };
  ($("chat") as HTMLElement).hidden = false;
  ($("members") as HTMLElement).hidden = true;
  ($("chat-members") as HTMLElement).hidden = convType !== ConvType.GROUP;
  renderHead();
  $("message-list").replaceChildren();
  $("chat-error").textContent = "";
  await loadOlder(true);
  await markRead();
  if (receiptsTimer) clearInterval(receiptsTimer);
  receiptsTimer = undefined;
  if (convType === ConvType.GROUP) {
    await refreshReceipts();
    // Group read positions are not pushed (PROTOCOL 8.2): asked while shown.
    receiptsTimer = setInterval(() => void refreshReceipts(), 3000);
  }
  renderConversations();
  input("text").focus();
}

let loadingOlder = false;

async function loadOlder(first = false): Promise<void> {
  if (!client || !open || loadingOlder) return;
  const o = open;
  loadingOlder = true;
  let page;
  try {
    page = await client.history(o.convType, o.peer, { beforeSeq: first ? 0 : o.oldest, limit: PAGE });
  } catch (e) {
    // Not a member any more, no such user, or offline: said in the chat pane.
    if (open === o) $("chat-error").textContent = e instanceof Error ? e.message : String(e);
    return;
  } finally {
    loadingOlder = false;
  }
  if (open !== o) return;
  for (const m of page.messages) o.messages.set(m.convSeq, m);
  if (page.messages.length > 0) o.oldest = page.messages[0].convSeq;
  o.hasOlder = page.hasMore;
  const box = $("messages");
  const before = box.scrollHeight - box.scrollTop;
  renderMessages();
  box.scrollTop = first ? box.scrollHeight : box.scrollHeight - before;
}

async function markRead(): Promise<void> {
  if (!client || !open || client.state !== "online") return;
  const c = client.conversation(open.convType, open.peer);
  if (c && c.unreadCount === 0 && c.readSeq >= c.lastConvSeq) return;
  try {
    await client.markRead(open.convType, open.peer);
  } catch {
    // Refused or offline: the next message or visit reads again.
  }
}

async function refreshReceipts(): Promise<void> {
  if (!client || !open || open.convType !== ConvType.GROUP || client.state !== "online") return;
  const o = open;
  const mine = [...o.messages.values()].filter((m) => m.from === me && m.contentType < 10000).map((m) => m.convSeq);
  if (mine.length === 0) return;
  try {
    const r = await client.receipts(o.peer, mine.slice(-100));
    for (const c of r.counts) o.readCounts.set(c.convSeq, c.readCount);
    o.memberCount = r.counts[0]?.memberCount ?? 0;
    if (open === o) renderMessages();
  } catch {
    // DISABLED in a large group (no counts), or offline: asked again later.
  }
}

function onMessage(m: Message): void {
  if (m.convSeq === 0) return; // marks: the list follows them
  if (m.contentType === GROUP_EVENT) void refreshGroups().catch(() => undefined);
  if (open && key(m.convType, peerFor(m)) === key(open.convType, open.peer)) {
    if (m.contentType === RECALL || m.contentType === EDIT) applyChange(m);
    open.messages.set(m.convSeq, m);
    if (m.from !== me) typingUntil.delete(key(open.convType, open.peer));
    renderMessages(true);
    renderTyping();
    if (document.visibilityState === "visible") markReadSoon();
  }
}

// One CONV_READ for a burst of messages, not one each (they count against
// the user's request rate).
let markReadTimer: ReturnType<typeof setTimeout> | undefined;
function markReadSoon(): void {
  if (markReadTimer) return;
  markReadTimer = setTimeout(() => {
    markReadTimer = undefined;
    void markRead();
  }, 500);
}

function applyChange(event: Message): void {
  try {
    applyChangeTo(event);
  } catch {
    // An event body that does not decode: the target stays as it was.
  }
}

function applyChangeTo(event: Message): void {
  if (!open) return;
  if (event.contentType === RECALL) {
    const r = im.v1.MessageRecall.decode(event.body);
    const target = open.messages.get(Number(r.targetConvSeq));
    if (target) open.messages.set(target.convSeq, { ...target, contentType: RECALLED, body: event.body });
  } else {
    const e = im.v1.MessageEdit.decode(event.body);
    const target = open.messages.get(Number(e.targetConvSeq));
    if (target && target.editVersion < e.editVersion)
      open.messages.set(target.convSeq, { ...target, body: e.body, editVersion: e.editVersion, editedMs: event.serverTimeMs });
  }
}

function renderHead(): void {
  if (!open) return;
  $("chat-title").textContent = title(open.convType, open.peer);
  $("chat-title").dataset.peer = open.peer;
  const dot = $("chat-presence");
  dot.className = "dot";
  if (open.convType === ConvType.C2C && presence.get(open.peer)) dot.classList.add("online");
  if (open.convType === ConvType.GROUP) dot.classList.add("group");
  $("chat-sub").textContent =
    open.convType === ConvType.C2C ? (presence.get(open.peer) ? "online" : "offline") : "";
}

function renderMessages(stickToBottom = false): void {
  if (!open || !client) return;
  const box = $("messages");
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
  ($("older") as HTMLElement).hidden = !open.hasOlder;
  const list = $("message-list");
  list.replaceChildren();
  const conv = client.conversation(open.convType, open.peer);
  for (const m of [...open.messages.values()].sort((a, b) => a.convSeq - b.convSeq)) {
    if (m.contentType === EDIT || m.contentType === RECALL) continue; // shown on their targets
    const li = document.createElement("li");
    li.dataset.seq = String(m.convSeq);
    li.dataset.testid = "message";
    if (m.contentType === GROUP_EVENT) {
      li.className = "msg event";
      li.textContent = groupEventText(m);
      list.append(li);
      continue;
    }
    if (m.contentType === RECALLED) {
      li.className = "msg recalled";
      li.textContent = m.from === me ? "You recalled a message" : `${m.from} recalled a message`;
      list.append(li);
      continue;
    }
    li.className = m.from === me ? "msg mine" : "msg";
    if (open.convType === ConvType.GROUP && m.from !== me) {
      const from = document.createElement("div");
      from.className = "from";
      from.textContent = m.from;
      li.append(from);
    }
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = text(m);
    li.append(body);
    const meta = document.createElement("div");
    meta.className = "meta";
    const time = document.createElement("span");
    time.textContent = new Date(m.serverTimeMs).toLocaleTimeString();
    meta.append(time);
    if (m.editVersion > 0) meta.append(Object.assign(document.createElement("span"), { textContent: "edited" }));
    if (m.from === me) {
      const receipt = document.createElement("span");
      receipt.dataset.testid = "receipt";
      if (open.convType === ConvType.C2C) {
        receipt.textContent = conv && conv.peerReadSeq >= m.convSeq ? "✓✓" : "✓";
        receipt.title = receipt.textContent === "✓✓" ? "read" : "sent";
      } else {
        const n = open.readCounts.get(m.convSeq) ?? 0;
        receipt.textContent = `read by ${n}`;
      }
      meta.append(receipt);
      const actions = document.createElement("span");
      actions.className = "actions";
      const edit = Object.assign(document.createElement("button"), { textContent: "edit", type: "button" });
      edit.onclick = () => void editMessage(m);
      const recall = Object.assign(document.createElement("button"), { textContent: "recall", type: "button" });
      recall.onclick = () => void recallMessage(m);
      actions.append(edit, recall);
      meta.append(actions);
    }
    li.append(meta);
    list.append(li);
  }
  // Sends not yet stored (offline, or on their way): shown as pending.
  for (const p of client.outbox) {
    if (p.to !== open.peer || p.convType !== open.convType) continue;
    const li = document.createElement("li");
    li.className = "msg mine pending";
    li.dataset.testid = "pending";
    const body = document.createElement("div");
    body.className = "body";
    body.textContent = new TextDecoder().decode(p.body);
    const meta = Object.assign(document.createElement("div"), { className: "meta", textContent: "sending…" });
    li.append(body, meta);
    list.append(li);
  }
  if (stickToBottom && atBottom) box.scrollTop = box.scrollHeight;
}

function renderTyping(): void {
  const el = $("typing");
  if (!open) return;
  const t = typingUntil.get(key(open.convType, open.peer));
  el.textContent = t && t.until > Date.now() ? `${t.from} is typing…` : "";
}
setInterval(renderTyping, 1000);

async function editMessage(m: Message): Promise<void> {
  if (!client || !open) return;
  const now = prompt("Edit message", text(m));
  if (now === null || now === text(m)) return;
  try {
    await client.edit(open.convType, open.peer, m.convSeq, now);
  } catch (e) {
    alert(e instanceof ImError ? e.message : String(e));
  }
}

async function recallMessage(m: Message): Promise<void> {
  if (!client || !open) return;
  try {
    await client.recall(open.convType, open.peer, m.convSeq);
  } catch (e) {
    alert(e instanceof ImError ? e.message : String(e));
  }
}

// ------------------------------------------------------------ forms

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  const uid = input("login-uid").value.trim();
  const token = input("login-token").value.trim();
  const wanted = tokenWanted;
  if (wanted && client && client.state !== "closed" && uid === me) {
    // The running client waits for this token: it goes on with it.
    tokenWanted = undefined;
    currentToken = token;
    sessionStorage.setItem("im.token", token);
    ($("login") as HTMLElement).hidden = true;
    ($("app") as HTMLElement).hidden = false;
    wanted.resolve(token || "dev");
    return;
  }
  login(uid, token).catch((e) => {
    // A login replaced by a newer one (a second click) says nothing.
    if (client && client.state !== "closed") return;
    client = undefined;
    showLogin(e instanceof Error ? e.message : String(e));
  });
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("im.uid");
  sessionStorage.removeItem("im.token");
  input("login-token").value = "";
  void client?.close();
  client = undefined;
  resetView();
  showLogin();
});

$("composer").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!client || !open) return;
  const body = input("text").value;
  if (!body) return;
  input("text").value = "";
  lastTypingSent = 0;
  void client.typing(open.convType, open.peer, TypingState.STOPPED).catch(() => undefined);
  const c = client;
  c.send(open.peer, body, { convType: open.convType })
    .catch((e) => alert(e instanceof Error ? e.message : String(e)))
    .finally(() => {
      if (client === c) renderMessages(true);
    });
  // Shown as pending at once (the outbox holds it once the storage has it).
  setTimeout(() => renderMessages(true), 50);
});

$("text").addEventListener("input", () => {
  if (!client || !open || Date.now() - lastTypingSent < TYPING_EVERY_MS) return;
  lastTypingSent = Date.now();
  void client.typing(open.convType, open.peer, TypingState.TYPING).catch(() => undefined);
});

$("older").addEventListener("click", () => void loadOlder());
$("messages").addEventListener("scroll", () => {
  if (open?.hasOlder && $("messages").scrollTop === 0) void loadOlder();
});

$("new-chat").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const uid = input("new-chat-uid").value.trim();
  if (!uid) return;
  input("new-chat-uid").value = "";
  void openConversation(ConvType.C2C, uid);
});

$("new-group").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!client) return;
  const name = input("new-group-name").value.trim();
  const members = input("new-group-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (!name) return;
  client
    .createGroup({ name, members })
    .then((g) => {
      groupNames.set(g.group.gid, g.group.name);
      input("new-group-name").value = "";
      input("new-group-members").value = "";
      return openConversation(ConvType.GROUP, g.group.gid);
    })
    .catch((e) => alert(e instanceof Error ? e.message : String(e)));
});

$("chat-members").addEventListener("click", () => void showMembers().catch((e) => alert(e instanceof Error ? e.message : String(e))));
async function showMembers(): Promise<void> {
  if (!client || !open || open.convType !== ConvType.GROUP) return;
  const box = $("members");
  box.hidden = !box.hidden;
  if (box.hidden) return;
  const g = await client.getGroup(open.peer, { withMembers: true });
  const list = $("member-list");
  const gid = open.peer;
  list.replaceChildren(
    ...g.members.map((u) => {
      const li = Object.assign(document.createElement("li"), { textContent: u === g.group.owner ? `${u} (owner)` : u });
      if (g.group.owner === me && u !== me) {
        // The owner removes members.
        const remove = Object.assign(document.createElement("button"), { textContent: "remove", type: "button" });
        remove.dataset.testid = `remove-${u}`;
        remove.onclick = () =>
          void client
            ?.removeMembers(gid, [u])
            .then(() => {
              box.hidden = true;
              return showMembers();
            })
            .catch((e) => alert(e instanceof Error ? e.message : String(e)));
        li.append(" ", remove);
      }
      return li;
    }),
  );
}

$("leave-group").addEventListener("click", () => {
  if (!client || !open || open.convType !== ConvType.GROUP) return;
  const gid = open.peer;
  client
    .leaveGroup(gid)
    .then(() => {
      ($("members") as HTMLElement).hidden = true;
      $("chat-error").textContent = "You left the group.";
    })
    .catch((e) => alert(e instanceof Error ? e.message : String(e)));
});

$("add-member").addEventListener("submit", (ev) => {
  ev.preventDefault();
  if (!client || !open) return;
  const uid = input("add-member-uid").value.trim();
  if (!uid) return;
  client
    .addMembers(open.peer, [uid])
    .then(() => {
      input("add-member-uid").value = "";
      ($("members") as HTMLElement).hidden = true;
      return showMembers();
    })
    .catch((e) => alert(e instanceof Error ? e.message : String(e)));
});

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible") void markRead();
});

// A reload logs in again with what this tab used.
const savedUid = sessionStorage.getItem("im.uid");
if (savedUid) {
  input("login-uid").value = savedUid;
  login(savedUid, sessionStorage.getItem("im.token") ?? "").catch((e) => showLogin(String(e)));
}

// For tests and curious users: the client of this page.
(globalThis as { imClient?: () => ImClient | undefined }).imClient = () => client;
