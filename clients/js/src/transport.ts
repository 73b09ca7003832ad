// The WebSocket under a client: the browser's own, or the `ws` package in
// Node (Node 18 has no global WebSocket). One binary message per frame.

/** The part of the WebSocket API the client uses (browsers and `ws` both have it). */
export interface SocketLike {
  binaryType: string;
  readonly readyState: number;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
}

export type SocketConstructor = new (url: string) => SocketLike;

export const OPEN = 1;

let nodeSocket: SocketConstructor | undefined;

/** The WebSocket class to use: the given one, the global one, or `ws`. */
export async function socketConstructor(given?: SocketConstructor): Promise<SocketConstructor> {
  if (given) return given;
  // In Node the `ws` package (it shows an admission refusal's Retry-After,
  // which Node 22's built-in WebSocket hides); in a browser its own.
  const inNode = typeof process !== "undefined" && !!process.versions?.node;
  const global = (globalThis as { WebSocket?: SocketConstructor }).WebSocket;
  if (global && !inNode) return global;
  if (!nodeSocket) {
    const mod = (await import("ws")) as unknown as { WebSocket?: SocketConstructor; default?: SocketConstructor };
    nodeSocket = mod.WebSocket ?? mod.default;
    if (!nodeSocket) throw new Error("no WebSocket: install the `ws` package or pass options.WebSocket");
  }
  return nodeSocket;
}

/** A received message's bytes (ArrayBuffer in browsers, Buffer or ArrayBuffer from `ws`). */
export function bytesOf(data: unknown): Uint8Array | undefined {
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  return undefined;
}
