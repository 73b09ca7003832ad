// Where a client keeps what it must not lose across reloads and restarts:
// the highest inbox seq it holds (resync starts there), the large groups'
// conv_seq cursors (PROTOCOL 9), and its unanswered sends (the outbox,
// retried after a reconnect; the server dedupes them by client_msg_id).

export interface PendingSend {
  clientMsgId: string;
  convType: number;
  to: string;
  contentType: number;
  body: Uint8Array;
  /** SendReq.search_text (PROTOCOL 8.6); absent in states saved by older versions. */
  searchText?: string;
  /** When the application first asked (ms since the epoch); 0 in states saved by older versions. */
  createdMs: number;
}

export interface ClientState {
  inboxSeq: number;
  groupCursors: Record<string, number>;
  outbox: PendingSend[];
}

export interface ClientStorage {
  load(key: string): Promise<ClientState | undefined>;
  save(key: string, state: ClientState): Promise<void>;
}

export function emptyState(): ClientState {
  return { inboxSeq: 0, groupCursors: {}, outbox: [] };
}

function clone(state: ClientState): ClientState {
  return {
    inboxSeq: state.inboxSeq,
    groupCursors: { ...state.groupCursors },
    outbox: state.outbox.map((p) => ({ ...p, body: new Uint8Array(p.body) })),
  };
}

/** The default: lives as long as the process (or the page). */
export class MemoryStorage implements ClientStorage {
  private readonly states = new Map<string, ClientState>();

  async load(key: string): Promise<ClientState | undefined> {
    const s = this.states.get(key);
    return s ? clone(s) : undefined;
  }

  async save(key: string, state: ClientState): Promise<void> {
    this.states.set(key, clone(state));
  }
}

/**
 * The browser's: one IndexedDB object store, one record per uid and device.
 * Where IndexedDB cannot be opened (disabled, some private modes) load()
 * rejects and the next call tries again; the session then runs without a
 * saved state (see ImSession.connect).
 */
export class IndexedDBStorage implements ClientStorage {
  private db: Promise<IDBDatabase> | undefined;

  constructor(private readonly name = "imserver-client") {}

  private open(): Promise<IDBDatabase> {
    if (!this.db) {
      this.db = new Promise<IDBDatabase>((resolve, reject) => {
        const req = indexedDB.open(this.name, 1);
        req.onupgradeneeded = () => req.result.createObjectStore("state");
        req.onsuccess = () => {
          const db = req.result;
          // Another tab upgrades the database: this one lets go, and opens again when next needed.
          db.onversionchange = () => {
            db.close();
            this.db = undefined;
          };
          resolve(db);
        };
        req.onerror = () => reject(req.error);
        req.onblocked = () => reject(new Error("IndexedDB is blocked by another tab"));
      }).catch((e) => {
        this.db = undefined; // tried again next time
        throw e;
      });
    }
    return this.db;
  }

  async load(key: string): Promise<ClientState | undefined> {
    const db = await this.open();
    const found = await new Promise<Partial<ClientState> | undefined>((resolve, reject) => {
      const req = db.transaction("state", "readonly").objectStore("state").get(key);
      req.onsuccess = () => resolve(req.result as Partial<ClientState> | undefined);
      req.onerror = () => reject(req.error);
    });
    // A record saved by an older version may lack fields.
    return found ? { ...emptyState(), ...found } : undefined;
  }

  async save(key: string, state: ClientState): Promise<void> {
    const db = await this.open();
    return new Promise((resolve, reject) => {
      const tx = db.transaction("state", "readwrite");
      tx.objectStore("state").put(clone(state), key);
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error ?? new Error("the IndexedDB save was aborted")); // e.g. over quota
    });
  }
}
