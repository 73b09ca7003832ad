export { ImClient } from "./client.js";
export type{ClientOptionsWithList, Group, GroupWithMembers, EditOptions, HistoryOptions, HistoryPage, SearchOptions, SearchPage, Presence, ReadCount, Receipts,} from './client.js';
export { ImSession, newClientMsgId } from "./session.js";
export { ConversationList, conversationKey, peerOf } from "./conversations.js";
export type { Conversation } from "./conversations.js";
export type {
  ClientEvents,
  ClientOptions,
  ConnectionState,
  KickInfo,
  SendOptions,
  SendResult,
  TokenProvider,
  TokenReason,
} from "./session.js";
export { ImError, ConnectionLost, ClientClosed, SendExpired } from "./errors.js";
export { Cmd, Status, statusName, encodeFrame, decodeFrame, HEADER_BYTES } from "./header.js";
export type { Frame, Header, StatusName } from "./header.js";
export { MemoryStorage, IndexedDBStorage, emptyState } from "./storage.js";
export type { ClientStorage, ClientState, PendingSend } from "./storage.js";
export { backoffDelay, DEFAULT_BACKOFF } from "./backoff.js";
export type { BackoffOptions } from "./backoff.js";
export { text, toMessage } from "./types.js";
export type { Message } from "./types.js";
export { im } from "./gen/im.js";
