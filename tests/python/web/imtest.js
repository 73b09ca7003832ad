// The browser side of tests/python/chromium_test.py: a WebSocket to this
// page's own /ws, the few protocol messages of a chat encoded by hand (the
// real SDK comes later). The Python test calls these through the DevTools
// protocol (Runtime.evaluate with awaitPromise); every promise is bounded.
'use strict';

(() => {
  const CMD = { LOGIN: 0x02, SEND: 0x10, PUSH: 0x11, ERROR: 0xff };
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  function varint(n) {
    let v = BigInt(n);
    const out = [];
    while (v >= 0x80n) {
      out.push(Number((v & 0x7fn) | 0x80n));
      v >>= 7n;
    }
    out.push(Number(v));
    return out;
  }
  const fieldVarint = (no, v) => (v ? [...varint(no << 3), ...varint(v)] : []);
  const fieldBytes = (no, s) => {
    const b = typeof s === 'string' ? enc.encode(s) : s;
    return b.length ? [...varint((no << 3) | 2), ...varint(b.length), ...b] : [];
  };

  // field number -> list of values (BigInt for varints, Uint8Array for bytes)
  function parse(buf) {
    const fields = new Map();
    let pos = 0;
    const readVarint = () => {
      let r = 0n;
      let shift = 0n;
      for (;;) {
        if (pos >= buf.length) throw new Error('truncated varint');
        const b = buf[pos++];
        r |= BigInt(b & 0x7f) << shift;
        if (!(b & 0x80)) return r;
        shift += 7n;
      }
    };
    while (pos < buf.length) {
      const key = Number(readVarint());
      let value;
      if ((key & 7) === 0) {
        value = readVarint();
      } else if ((key & 7) === 2) {
        const len = Number(readVarint());
        value = buf.subarray(pos, pos + len);
        pos += len;
      } else if ((key & 7) === 1) {
        value = buf.subarray(pos, pos + 8);
        pos += 8;
      } else if ((key & 7) === 5) {
        value = buf.subarray(pos, pos + 4);
        pos += 4;
      } else {
        throw new Error(`wire type ${key & 7}`);
      }
      const no = key >> 3;
      if (!fields.has(no)) fields.set(no, []);
      fields.get(no).push(value);
    }
    return fields;
  }
  const one = (f, no, dflt) => (f.has(no) ? f.get(no)[0] : dflt);
  const text = (f, no) => dec.decode(one(f, no, new Uint8Array(0)));

  function frame(cmd, seq, body) {
    const out = new Uint8Array(20 + body.length);
    const v = new DataView(out.buffer);
    v.setUint16(0, 0x494d);
    v.setUint8(2, 1);
    v.setUint16(4, cmd);
    v.setUint32(8, seq);
    v.setUint32(12, body.length);
    out.set(body, 20);
    return out;
  }

  function unframe(buf) {
    const bytes = new Uint8Array(buf);
    const v = new DataView(bytes.buffer);
    if (bytes.length < 20 || v.getUint16(0) !== 0x494d) throw new Error(`not a frame (${bytes.length} bytes)`);
    return {
      flags: bytes[3], cmd: v.getUint16(4), status: v.getUint16(6), seq: v.getUint32(8),
      body: bytes.subarray(20, 20 + v.getUint32(12)),
    };
  }

  function bounded(promise, ms, what) {
    let timer;
    return Promise.race([
      promise.finally(() => clearTimeout(timer)),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
    ]);
  }

  const state = { ws: null, seq: 0, pending: new Map(), pushes: [], waiters: [], errors: [] };

  function onMessage(event) {
    if (typeof event.data === 'string') {
      state.errors.push('a text message from the server');
      return;
    }
    const f = unframe(event.data);
    if ((f.flags & 1) && state.pending.has(f.seq)) {
      state.pending.get(f.seq)(f);
      state.pending.delete(f.seq);
      return;
    }
    if (f.cmd === CMD.PUSH) {
      for (const m of parse(f.body).get(1) || []) {
        const mf = parse(m);
        state.pushes.push({ msgId: String(one(mf, 1, 0n)), from: text(mf, 3), to: text(mf, 4), body: text(mf, 9) });
      }
      for (const w of state.waiters.splice(0)) w();
    }
  }

  function call(cmd, body) {
    const seq = ++state.seq;
    const answer = new Promise((resolve) => state.pending.set(seq, resolve));
    state.ws.send(frame(cmd, seq, Uint8Array.from(body)));
    return bounded(answer, 10000, `the answer to cmd ${cmd}`);
  }

  window.imtest = {
    // Opens a WebSocket to this page's origin; resolves with the URL.
    connect() {
      const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
      state.ws = new WebSocket(url);
      state.ws.binaryType = 'arraybuffer';
      state.ws.onmessage = onMessage;
      return bounded(new Promise((resolve, reject) => {
        state.ws.onopen = () => resolve(url);
        state.ws.onerror = () => reject(new Error(`cannot open ${url}`));
      }), 10000, `open ${url}`);
    },
    // LoginReq: uid = 1, token = 2, device_type = 3 (WEB), device_id = 4; resolves with the status.
    async login(uid, token) {
      const f = await call(CMD.LOGIN, [...fieldBytes(1, uid), ...fieldBytes(2, token), ...fieldVarint(3, 3),
                                       ...fieldBytes(4, 'chromium')]);
      return f.status;
    },
    // SendReq: client_msg_id = 1, conv_type = 2 (C2C), to = 3, content_type = 4, body = 5.
    async send(to, cmid, body) {
      const f = await call(CMD.SEND, [...fieldBytes(1, cmid), ...fieldVarint(2, 1), ...fieldBytes(3, to),
                                      ...fieldVarint(4, 1), ...fieldBytes(5, body)]);
      return { status: f.status, msgId: f.status === 0 ? String(one(parse(f.body), 1, 0n)) : '' };
    },
    // The next pushed message.
    async nextPush(ms) {
      const deadline = Date.now() + ms;
      while (state.pushes.length === 0) {
        if (Date.now() >= deadline) throw new Error('no PUSH came');
        await bounded(new Promise((resolve) => state.waiters.push(resolve)), deadline - Date.now(), 'a PUSH');
      }
      return state.pushes.shift();
    },
    // Closes with `code`; resolves with the code of the server's close.
    close(code) {
      return bounded(new Promise((resolve) => {
        state.ws.onclose = (event) => resolve({ code: event.code, clean: event.wasClean });
        state.ws.close(code, 'bye');
      }), 10000, 'close');
    },
    errors: () => state.errors,
  };
})();
