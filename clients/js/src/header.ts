// The 20-byte frame header of PROTOCOL.md section 1 (big-endian), and the
// command and status numbers of its tables 2 and 3. Over WebSocket each
// binary message carries exactly one frame.

export const HEADER_BYTES = 20;
export const MAGIC = 0x494d; // "IM"
export const VERSION = 1;
export const FLAG_RESPONSE = 0x01;
export const FLAG_COMPRESSED = 0x02;

export const Cmd = {
  HEARTBEAT: 0x0001,
  LOGIN: 0x0002,
  LOGOUT: 0x0003,
  KICKOUT: 0x0004,
  SEND: 0x0010,
  PUSH: 0x0011,
  ACK: 0x0012,
  PULL: 0x0013,
  HISTORY: 0x0014,
  RECALL: 0x0015,
  EDIT: 0x0016,
  DELETE: 0x0017,
  SEARCH: 0x0018,
  GROUP_CREATE: 0x0020,
  GROUP_GET: 0x0021,
  GROUP_LIST: 0x0022,
  GROUP_ADD_MEMBERS: 0x0023,
  GROUP_REMOVE_MEMBERS: 0x0024,
  GROUP_LEAVE: 0x0025,
  GROUP_UPDATE: 0x0026,
  GROUP_DISMISS: 0x0027,
  PRESENCE: 0x0030,
  PRESENCE_WATCH: 0x0031,
  PRESENCE_PUSH: 0x0032,
  REPORT: 0x0040,
  SERVER_PUSH: 0x0041,
  CONV_LIST: 0x0050,
  CONV_READ: 0x0051,
  CONV_UPDATE: 0x0052,
  RECEIPTS: 0x0053,
  TYPING: 0x0054,
  TYPING_PUSH: 0x0055,
  ERROR: 0x00ff,
} as const;

export const Status = {
  OK: 0,
  BAD_REQUEST: 1,
  UNAUTHENTICATED: 2,
  FORBIDDEN: 3,
  NOT_FOUND: 4,
  RATE_LIMITED: 5,
  TOO_LARGE: 6,
  UNKNOWN_COMMAND: 7,
  CONFLICT: 8,
  UNSUPPORTED_VERSION: 9,
  BAD_FRAME: 10,
  FRAME_TOO_LARGE: 11,
  UNAVAILABLE: 12,
  INTERNAL: 13,
  GONE: 14,
  EXPIRED: 15,
  DISABLED: 16,
} as const;

export type StatusName = keyof typeof Status;

export function statusName(code: number): StatusName | "UNKNOWN" {
  for (const [name, value] of Object.entries(Status)) if (value === code) return name as StatusName;
  return "UNKNOWN";
}

export interface Header {
  flags: number;
  cmd: number;
  status: number;
  seq: number;
  bodyLen: number;
}

export interface Frame {
  header: Header;
  body: Uint8Array;
}

/** One frame: the header followed by `body`. */
export function encodeFrame(h: Omit<Header, "bodyLen">, body: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES + body.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, MAGIC);
  v.setUint8(2, VERSION);
  v.setUint8(3, h.flags);
  v.setUint16(4, h.cmd);
  v.setUint16(6, h.status);
  v.setUint32(8, h.seq >>> 0);
  v.setUint32(12, body.length);
  v.setUint32(16, 0);
  out.set(body, HEADER_BYTES);
  return out;
}

/**
 * The frame one WebSocket message carries. Throws on a message that is not
 * exactly one well-formed frame (the server never sends one).
 */
export function decodeFrame(message: Uint8Array): Frame {
  if (message.length < HEADER_BYTES) throw new Error(`frame shorter than its header (${message.length} bytes)`);
  const v = new DataView(message.buffer, message.byteOffset, message.byteLength);
  if (v.getUint16(0) !== MAGIC) throw new Error("bad frame magic");
  if (v.getUint8(2) !== VERSION) throw new Error(`unsupported frame version ${v.getUint8(2)}`);
  const header: Header = {
    flags: v.getUint8(3),
    cmd: v.getUint16(4),
    status: v.getUint16(6),
    seq: v.getUint32(8),
    bodyLen: v.getUint32(12),
  };
  if (header.bodyLen !== message.length - HEADER_BYTES)
    throw new Error(`body_len ${header.bodyLen} but the message holds ${message.length - HEADER_BYTES} bytes`);
  return { header, body: message.subarray(HEADER_BYTES) };
}
