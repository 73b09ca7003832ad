'use strict';
// A third-party WebSocket client against imserver: the npm `ws` package logs
// in over ws://, chats with a raw TCP client (Node's net) and with another
// `ws` client, sends a fragmented message, pings, and closes.
//
// usage: node ws_chat_test.js --imserver BIN
// Starts its own imserver on 127.0.0.1 port 0 with a temporary data dir and
// stops it by its PID; the whole run is bounded by a timer. Node 18 or later.

const { spawn } = require('child_process');
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const os = require('os');
const path = require('path');
const WebSocket = require('ws');

const SECRET = 'test-secret-0123456789abcdef-0123456789';
const WAIT_MS = 10000;
const TOTAL_MS = 120000;

const CMD = { HEARTBEAT: 0x01, LOGIN: 0x02, SEND: 0x10, PUSH: 0x11, PULL: 0x13, ERROR: 0xff };
const DEVICE = { IOS: 1, WEB: 3 };

// ---------------------------------------------------------------- protobuf, by hand

function varint(n) {
  let v = BigInt(n);
  const out = [];
  while (v >= 0x80n) {
    out.push(Number((v & 0x7fn) | 0x80n));
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}

function fieldVarint(no, v) {
  return v ? Buffer.concat([varint(no << 3), varint(v)]) : Buffer.alloc(0);
}

function fieldBytes(no, b) {
  const bytes = Buffer.isBuffer(b) ? b : Buffer.from(b, 'utf8');
  return bytes.length ? Buffer.concat([varint((no << 3) | 2), varint(bytes.length), bytes]) : Buffer.alloc(0);
}

// A message as a map: field number -> list of values (BigInt or Buffer).
function parseMessage(buf) {
  const fields = new Map();
  let pos = 0;
  const readVarint = () => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (pos >= buf.length) throw new Error('truncated varint');
      const b = buf[pos++];
      result |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return result;
      shift += 7n;
    }
  };
  while (pos < buf.length) {
    const key = Number(readVarint());
    const no = key >> 3;
    let value;
    switch (key & 7) {
      case 0: value = readVarint(); break;
      case 2: {
        const len = Number(readVarint());
        value = buf.subarray(pos, pos + len);
        pos += len;
        break;
      }
      case 1: value = buf.subarray(pos, pos + 8); pos += 8; break;
      case 5: value = buf.subarray(pos, pos + 4); pos += 4; break;
      default: throw new Error(`wire type ${key & 7}`);
    }
    if (!fields.has(no)) fields.set(no, []);
    fields.get(no).push(value);
  }
  return fields;
}

const first = (fields, no, dflt) => (fields.has(no) ? fields.get(no)[0] : dflt);

function loginReq(uid, deviceType, deviceId) {
  return Buffer.concat([fieldBytes(1, uid), fieldBytes(2, tokenFor(uid)), fieldVarint(3, deviceType),
                        fieldBytes(4, deviceId || ''), fieldBytes(5, 'node-ws-test')]);
}

function sendReq(to, cmid, text) {
  // client_msg_id = 1, conv_type = 2 (C2C = 1), to = 3, content_type = 4, body = 5
  return Buffer.concat([fieldBytes(1, cmid), fieldVarint(2, 1), fieldBytes(3, to), fieldVarint(4, 1),
                        fieldBytes(5, text)]);
}

// MessagePush.messages = 1; Message: msg_id = 1 (a uint64: kept as a string), from = 3, to = 4, body = 9
function pushedMessages(body) {
  return (parseMessage(body).get(1) || []).map((m) => {
    const f = parseMessage(m);
    return {
      msgId: String(first(f, 1, 0n)),
      from: first(f, 3, Buffer.alloc(0)).toString(),
      to: first(f, 4, Buffer.alloc(0)).toString(),
      body: first(f, 9, Buffer.alloc(0)).toString(),
    };
  });
}

// ---------------------------------------------------------------- tokens and frames

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function tokenFor(uid) {
  const input = `${b64url('{"alg":"HS256","typ":"JWT"}')}.${b64url(JSON.stringify({ sub: uid }))}`;
  return `${input}.${b64url(crypto.createHmac('sha256', SECRET).update(input).digest())}`;
}

function encodeFrame(cmd, seq, body) {
  const h = Buffer.alloc(20);
  h.writeUInt16BE(0x494d, 0);
  h.writeUInt8(1, 2);
  h.writeUInt16BE(cmd, 4);
  h.writeUInt32BE(seq, 8);
  h.writeUInt32BE(body.length, 12);
  return Buffer.concat([h, body]);
}

function decodeFrame(buf) {
  if (buf.length < 20 || buf.readUInt16BE(0) !== 0x494d) throw new Error(`not a frame: ${buf.length} bytes`);
  const bodyLen = buf.readUInt32BE(12);
  return {
    flags: buf[3], cmd: buf.readUInt16BE(4), status: buf.readUInt16BE(6), seq: buf.readUInt32BE(8),
    body: buf.subarray(20, 20 + bodyLen), length: 20 + bodyLen,
  };
}

function check(condition, what) {
  if (!condition) throw new Error(`check failed: ${what}`);
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

// ---------------------------------------------------------------- sessions

// Requests matched to responses by seq; frames the server starts are queued.
class Session {
  constructor(name) {
    this.name = name;
    this.seq = 0;
    this.pending = new Map();
    this.started = [];
    this.waiters = [];
  }

  onFrame(f) {
    if ((f.flags & 1) && this.pending.has(f.seq)) {
      const resolve = this.pending.get(f.seq);
      this.pending.delete(f.seq);
      resolve(f);
      return;
    }
    this.started.push(f);
    for (const w of this.waiters.splice(0)) w();
  }

  call(cmd, body = Buffer.alloc(0), options = {}) {
    const seq = ++this.seq;
    const answer = new Promise((resolve) => this.pending.set(seq, resolve));
    this.write(encodeFrame(cmd, seq, body), options);
    return withTimeout(answer, WAIT_MS, `${this.name}: answer to cmd ${cmd}`);
  }

  async nextPush() {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const i = this.started.findIndex((f) => f.cmd === CMD.PUSH);
      if (i >= 0) return pushedMessages(this.started.splice(i, 1)[0].body);
      check(Date.now() < deadline, `${this.name}: a PUSH within ${WAIT_MS} ms`);
      await withTimeout(new Promise((resolve) => this.waiters.push(resolve)), deadline - Date.now(),
                        `${this.name}: a PUSH`);
    }
  }

  async login(uid, deviceType, deviceId) {
    const f = await this.call(CMD.LOGIN, loginReq(uid, deviceType, deviceId));
    check(f.status === 0, `${this.name}: LOGIN status ${f.status}`);
  }

  async send(to, cmid, text, options) {
    const f = await this.call(CMD.SEND, sendReq(to, cmid, text), options);
    check(f.status === 0, `${this.name}: SEND status ${f.status}`);
    return String(first(parseMessage(f.body), 1, 0n));  // SendResp.msg_id
  }
}

class WsSession extends Session {
  static open(url, name) {
    const s = new WsSession(name);
    s.ws = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: WAIT_MS });
    s.ws.on('message', (data, isBinary) => {
      check(isBinary, `${name}: a binary message`);
      s.onFrame(decodeFrame(Buffer.from(data)));
    });
    return withTimeout(new Promise((resolve, reject) => {
      s.ws.once('open', () => resolve(s));
      s.ws.once('error', reject);
    }), WAIT_MS, `${name}: open`);
  }

  // options.fragments: the frame sent as that many WebSocket fragments
  write(bytes, options) {
    const n = options.fragments || 1;
    const step = Math.max(1, Math.ceil(bytes.length / n));
    for (let i = 0; i < bytes.length; i += step) {
      this.ws.send(bytes.subarray(i, i + step), { binary: true, fin: i + step >= bytes.length });
    }
  }
}

class TcpSession extends Session {
  static open(port, name) {
    const s = new TcpSession(name);
    s.buffer = Buffer.alloc(0);
    s.socket = net.connect(port, '127.0.0.1');
    s.socket.on('data', (chunk) => {
      s.buffer = Buffer.concat([s.buffer, chunk]);
      while (s.buffer.length >= 20 && s.buffer.length >= 20 + s.buffer.readUInt32BE(12)) {
        const f = decodeFrame(s.buffer);
        s.buffer = s.buffer.subarray(f.length);
        s.onFrame(f);
      }
    });
    return withTimeout(new Promise((resolve, reject) => {
      s.socket.once('connect', () => resolve(s));
      s.socket.once('error', reject);
    }), WAIT_MS, `${name}: connect`);
  }

  write(bytes) {
    this.socket.write(bytes);
  }
}

// ---------------------------------------------------------------- the server

function startServer(binary) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imjs-'));
  const config = path.join(dir, 'im.toml');
  fs.writeFileSync(config, [
    '[server]',
    'listen = "127.0.0.1:0"',
    'ws_listen = "127.0.0.1:0"',
    'io_threads = 2',
    '[sharding]',
    'shards = 2',
    '[admin]',
    'listen = ""',
    '[storage]',
    `data_dir = ${JSON.stringify(path.join(dir, 'data'))}`,
    '[auth]',
    'mode = "jwt"',
    `jwt_secret = ${JSON.stringify(SECRET)}`,
    '[log]',
    'level = "debug"',
    '',
  ].join('\n'));
  const logFd = fs.openSync(path.join(dir, 'server.log'), 'a');
  const child = spawn(binary, ['--config', config], { stdio: ['ignore', 'pipe', logFd] });
  fs.closeSync(logFd);
  const ports = {};
  const ready = new Promise((resolve, reject) => {
    let text = '';
    child.stdout.on('data', (chunk) => {
      text += chunk.toString();
      for (const m of text.matchAll(/imserver: listening (\w+) \S+:(\d+)/g)) ports[m[1]] = Number(m[2]);
      if (ports.tcp && ports.ws) resolve();
    });
    child.once('exit', (code) => reject(new Error(`imserver exited (${code}) before listening`)));
  });
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');  // this child's PID only
      try {
        await withTimeout(exited, 15000, 'imserver stops');
      } catch (e) {
        child.kill('SIGKILL');
      }
    }
    if (!process.env.IM_KEEP_TEST_DIRS) fs.rmSync(dir, { recursive: true, force: true });
  };
  return { child, ports, dir, ready: withTimeout(ready, 30000, 'imserver listens'), stop };
}

// ---------------------------------------------------------------- the test

async function test(server) {
  const url = `ws://127.0.0.1:${server.ports.ws}/ws`;
  const alice = await WsSession.open(url, 'alice (ws)');
  const bob = await TcpSession.open(server.ports.tcp, 'bob (tcp)');
  const carol = await WsSession.open(url, 'carol (ws)');
  try {
    await alice.login('alice', DEVICE.WEB, 'node');
    await bob.login('bob', DEVICE.IOS, 'phone');
    await carol.login('carol', DEVICE.WEB, 'node');

    // ws -> tcp
    const id1 = await alice.send('bob', 'js-1', 'hello bob, from node ws');
    let got = await bob.nextPush();
    check(got.length === 1 && got[0].body === 'hello bob, from node ws' && got[0].from === 'alice',
          `bob got ${JSON.stringify(got)}`);
    check(got[0].msgId === id1, 'the same msg_id');
    console.log('ws -> tcp: ok');

    // tcp -> ws
    const id2 = await bob.send('alice', 'js-2', 'hello alice, from TCP');
    got = await alice.nextPush();
    check(got.length === 1 && got[0].body === 'hello alice, from TCP' && got[0].msgId === id2,
          `alice got ${JSON.stringify(got)}`);
    console.log('tcp -> ws: ok');

    // ws -> ws, the SEND in four fragments
    const long = 'fragmented '.repeat(200);
    await alice.send('carol', 'js-3', long, { fragments: 4 });
    got = await carol.nextPush();
    check(got.length === 1 && got[0].body === long, 'carol got the fragmented message whole');
    await carol.send('alice', 'js-4', 'hello alice, from carol');
    got = await alice.nextPush();
    check(got.length === 1 && got[0].from === 'carol', 'alice got carol\'s message');
    console.log('ws -> ws, fragmented: ok');

    // ping: a pong with the same payload
    const payload = Buffer.from('node ping payload');
    const pong = new Promise((resolve) => alice.ws.once('pong', resolve));
    alice.ws.ping(payload);
    const echoed = await withTimeout(pong, WAIT_MS, 'pong');
    check(Buffer.compare(Buffer.from(echoed), payload) === 0, `pong payload ${echoed}`);
    const hb = await alice.call(CMD.HEARTBEAT);
    check(hb.status === 0, 'HEARTBEAT over ws');
    console.log('ping/pong: ok');

    // close: answered with a close echoing the code
    const closed = new Promise((resolve) => alice.ws.once('close', (code, reason) => resolve({ code, reason })));
    alice.ws.close(1000, 'bye');
    const { code } = await withTimeout(closed, WAIT_MS, 'close');
    check(code === 1000, `the server's close code ${code}`);
    console.log('close: ok');
  } finally {
    for (const s of [alice, carol]) if (s.ws.readyState !== WebSocket.CLOSED) s.ws.terminate();
    bob.socket.destroy();
  }
}

async function main() {
  const i = process.argv.indexOf('--imserver');
  check(i > 0 && process.argv[i + 1], 'usage: node ws_chat_test.js --imserver BIN');
  const watchdog = setTimeout(() => {
    console.error(`FAILED: the test did not finish within ${TOTAL_MS} ms`);
    process.exit(1);
  }, TOTAL_MS);
  const server = startServer(process.argv[i + 1]);
  let failed = false;
  try {
    await server.ready;
    console.log(`imserver pid ${server.child.pid}: ${JSON.stringify(server.ports)}`);
    await test(server);
  } catch (e) {
    failed = true;
    console.error(`FAILED: ${e.stack || e}`);
    try {
      console.error(fs.readFileSync(path.join(server.dir, 'server.log'), 'utf8').split('\n').slice(-30).join('\n'));
    } catch (ignored) {
      // no log to show
    }
  } finally {
    await server.stop();
    clearTimeout(watchdog);
  }
  console.log(failed ? 'FAILED' : 'PASSED');
  process.exit(failed ? 1 : 0);
}

main();
