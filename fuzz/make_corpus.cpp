// Writes the seed corpora of fuzz/corpus/<harness>/: small valid and
// near-valid inputs in each harness's input format (see each harness's
// comment). Run after a protocol change:
//   cmake --build build --target fuzz_make_corpus && build/fuzz/fuzz_make_corpus fuzz/corpus config/im.toml

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "auth/jwt.h"
#include "im/frame_codec.h"
#include "net/frame_compressor.h"
#include "net/ws_codec.h"
#include "net/ws_handshake.h"
#include "proto/im.pb.h"

namespace {

namespace fs = std::filesystem;
using im::Cmd;
namespace v1 = im::v1;

fs::path g_root;

void put(const std::string& harness, const std::string& name, const std::string& bytes) {
  const fs::path dir = g_root / harness;
  fs::create_directories(dir);
  std::ofstream(dir / name, std::ios::binary) << bytes;
}

std::string u16(unsigned v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

std::string frame(Cmd cmd, std::uint32_t seq, const std::string& body, std::uint8_t flags = 0) {
  im::FrameHeader h;
  h.cmd = cmd;
  h.seq = seq;
  h.flags = flags;
  return im::encode_frame(h, body);
}

// ---------------------------------------------------------------- frame_decoder

void frame_decoder() {
  v1::LoginReq login;
  login.set_uid("alice");
  login.set_token("t");
  const std::string two = frame(Cmd::kHeartbeat, 1, "") + frame(Cmd::kLogin, 2, login.SerializeAsString());
  put("frame_decoder", "two_frames", std::string("\x05\x07", 2) + two);
  put("frame_decoder", "partial", std::string("\x05\x01", 2) + two.substr(0, two.size() - 3));
  std::string bad_magic = frame(Cmd::kHeartbeat, 1, "x");
  bad_magic[0] = 'X';
  put("frame_decoder", "bad_magic", std::string("\x05\x02", 2) + bad_magic);
  std::string bad_version = frame(Cmd::kHeartbeat, 1, "x");
  bad_version[2] = 2;
  put("frame_decoder", "bad_version", std::string("\x05\x03", 2) + bad_version);
  put("frame_decoder", "too_large", std::string("\x02\x04", 2) + frame(Cmd::kSend, 3, std::string(40, 'b')));
  put("frame_decoder", "response_flag", std::string("\x04\x05", 2) + frame(Cmd::kPush, 9, "", 1) + two);
}

// ---------------------------------------------------------------- decompress
// [limit selector] [body]: bodies the server's compressor writes, and ones it never would.
void decompress() {
  im::net::FrameCompressor compressor;
  auto packed = [&](const std::string& body) {
    auto f = compressor.compress(std::make_shared<const std::string>(frame(Cmd::kPull, 1, body, 1)));
    return f->substr(im::kHeaderSize);
  };
  std::string text;
  while (text.size() < 3000) text += "see you at the meeting tomorrow; ";
  const std::string good = packed(text);
  put("decompress", "text", std::string("\x06", 1) + good);
  put("decompress", "over_limit", std::string("\x02", 1) + good);
  put("decompress", "full_frame", std::string("\x06", 1) + packed(std::string(65536, 'a')));
  put("decompress", "cut", std::string("\x06", 1) + good.substr(0, good.size() / 2));
  put("decompress", "trailing", std::string("\x06", 1) + good + "xyz");
  put("decompress", "two_frames", std::string("\x06", 1) + good + good);
  put("decompress", "not_zstd", std::string("\x06", 1) + text.substr(0, 300));
}

// ---------------------------------------------------------------- ws

std::string masked(im::ws::Opcode op, const std::string& payload, bool fin = true) {
  std::array<std::uint8_t, 4> mask{0x11, 0x22, 0x33, 0x44};
  std::array<char, im::ws::kMaxHeadSize> head;
  const std::size_t n = im::ws::encode_head(op, payload.size(), head, &mask);
  if (!fin) head[0] = static_cast<char>(head[0] & 0x7F);
  std::string p = payload;
  im::ws::apply_mask(std::span<char>(p.data(), p.size()), mask);
  return std::string(head.data(), n) + p;
}

void ws() {
  using im::ws::Opcode;
  const std::string msg = frame(Cmd::kHeartbeat, 1, "");
  put("ws", "server_message", std::string("\x00\x06\x03", 3) + masked(Opcode::kBinary, msg));
  put("ws", "server_fragments",
      std::string("\x00\x07\x05", 3) + masked(Opcode::kBinary, msg.substr(0, 7), false) +
          masked(Opcode::kPing, "hi") + masked(Opcode::kContinuation, msg.substr(7)) +
          masked(Opcode::kBinary, std::string(300, 'z')));
  put("ws", "server_close", std::string("\x00\x06\x01", 3) + masked(Opcode::kClose, im::ws::close_payload(1000, "bye \xC3\xA9")));
  put("ws", "server_text", std::string("\x00\x06\x02", 3) + masked(Opcode::kText, "text"));
  put("ws", "client_messages",
      std::string("\x01\x07\x04", 3) + im::ws::encode_frame(Opcode::kBinary, msg) +
          im::ws::encode_frame(Opcode::kPong, "") + im::ws::encode_frame(Opcode::kClose, ""));
  put("ws", "upgrade", std::string("\x02\x00\x00", 3) +
                           im::ws::client_request("127.0.0.1:9701", "/ws", "dGhlIHNhbXBsZSBub25jZQ==", "http://a"));
  put("ws", "get_page", std::string("\x02\x00\x00", 3) + "GET /index.html?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  put("ws", "head_short", std::string("\x02\x01\x00", 3) + "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n");
  put("ws", "answer", std::string("\x03\x00\x00", 3) +
                          "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          "Sec-WebSocket-Accept: " + im::ws::accept_key("dGhlIHNhbXBsZSBub25jZQ==") + "\r\n\r\n");
}

// ---------------------------------------------------------------- jwt

void jwt() {
  const std::string secret = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
  put("jwt", "minted", std::string(1, '\0') + im::mint_jwt(secret, "alice", 1800000000));
  put("jwt", "minted_no_exp", std::string(1, '\0') + im::mint_jwt(secret, "alice", 0));
  put("jwt", "expired", std::string(1, '\0') + im::mint_jwt(secret, "alice", 1600000000));
  put("jwt", "claims", std::string(1, '\1') + R"({"alg":"HS256","typ":"JWT"})" + "\n" +
                           R"({"sub":"alice","exp":1800000000,"nbf":1600000000})");
  put("jwt", "claims_float", std::string(1, '\1') + R"({"alg":"HS256"})" + "\n" +
                                 R"({"sub":"alice","exp":1.8e9,"nbf":1.6e9})");
  put("jwt", "claims_other_uid", std::string(1, '\3') + R"({"alg":"HS256"})" + "\n" + R"({"sub":"","exp":"x"})");
  put("jwt", "alg_none", std::string(1, '\1') + R"({"alg":"none"})" + "\n" + R"({"sub":"alice"})");
  put("jwt", "not_jwt", std::string(1, '\0') + "a.b");
}

// ---------------------------------------------------------------- config

void config(const std::string& example) {
  put("config", "minimal", "[auth]\nmode = \"jwt\"\njwt_secret = \"0123456789abcdef0123456789abcdef\"\n");
  put("config", "insecure_loopback",
      "[server]\nlisten = \"127.0.0.1:0\"\nws_listen = \"\"\nmax_frame_bytes = 65536\nws_allowed_origins = "
      "[\"https://a\"]\n[admin]\nlisten = \"[::1]:0\"\n[auth]\nmode = \"insecure\"\n[limits]\nburst = 10\n");
  put("config", "env_only",
      std::string("", 0) + '\0' +
          "IMSERVER_AUTH__JWT_SECRET=0123456789abcdef0123456789abcdef\nIMSERVER_SERVER__WS_ALLOWED_ORIGINS=a,b\n"
          "IMSERVER_STORAGE__FSYNC=true\nIMSERVER_LIMITS__BURST=7\n");
  put("config", "unknown_key", "[server]\nlisten = \"127.0.0.1:1\"\nnope = 1\n");
  put("config", "bad_types", "[server]\nmax_frame_bytes = \"big\"\n[storage]\nfsync = 1\n");
  put("config", "bad_toml", "[server\nlisten = ");
  if (!example.empty()) put("config", "example_im_toml", example);
}

// ---------------------------------------------------------------- dispatcher

// sel values: the index in dispatcher.cpp's kCmds.
enum : unsigned char {
  kHeartbeat = 0, kLogin = 1, kLogout = 2, kSend = 4, kPush = 5, kAck = 6, kPull = 7, kHistory = 8, kGroupCreate = 9,
  kGroupGet = 10, kGroupList = 11, kGroupAdd = 12, kGroupRemove = 13, kGroupLeave = 14, kGroupUpdate = 15,
  kGroupDismiss = 16, kPresence = 17, kReport = 18, kTyping = 25,
  kPresenceWatch = 0x31,  // not in kCmds: the cmd itself
};

std::string rec(unsigned char sel, const std::string& body, unsigned char flags = 0) {
  return std::string(1, static_cast<char>(sel)) + static_cast<char>(flags) + u16(static_cast<unsigned>(body.size())) +
         body;
}

std::string send(const std::string& to, const std::string& id, int conv = v1::C2C) {
  v1::SendReq r;
  r.set_client_msg_id(id);
  r.set_conv_type(static_cast<v1::ConvType>(conv));
  r.set_to(to);
  r.set_body("hello");
  return r.SerializeAsString();
}

void dispatcher() {
  const std::string alice(1, '\x00');  // uid alice, device type 0, dev0
  const std::string bob_web(1, '\x0D');  // uid bob, device type 3
  v1::PullReq pull;
  pull.set_limit(10);
  v1::AckReq ack;
  ack.set_inbox_seq(1);
  v1::HistoryReq hist;
  hist.set_conv_type(v1::C2C);
  hist.set_peer("bob");
  hist.set_limit(5);
  v1::GroupCreateReq create;
  create.set_gid("g1");
  create.set_name("team");
  create.add_members("bob");
  create.add_members("carol");
  v1::GroupGetReq get;
  get.set_gid("g1");
  get.set_with_members(true);
  v1::GroupMembersReq members;
  members.set_gid("g1");
  members.add_uids("dave");
  v1::GroupIdReq gid;
  gid.set_gid("g1");
  v1::GroupUpdateReq update;
  update.set_gid("g1");
  update.set_name("renamed");
  v1::PresenceReq presence;
  presence.add_uids("alice");
  presence.add_uids("bob");
  v1::ReportReq report;
  report.set_report_id("r1");
  report.set_topic("t");
  report.set_payload("p");
  v1::LoginReq login;
  login.set_uid("alice");
  login.set_token("x.y.z");

  put("dispatcher", "heartbeat", alice + rec(kHeartbeat, ""));
  put("dispatcher", "send_pull_ack", alice + rec(kSend, send("bob", "m1")) + rec(kPull, pull.SerializeAsString()) +
                                         rec(kAck, ack.SerializeAsString()));
  put("dispatcher", "send_self_dup", alice + rec(kSend, send("alice", "m2")) + rec(kSend, send("alice", "m2")));
  put("dispatcher", "history", alice + rec(kHistory, hist.SerializeAsString()));
  put("dispatcher", "groups",
      alice + rec(kGroupCreate, create.SerializeAsString()) + rec(kSend, send("g1", "m3", v1::GROUP)) +
          rec(kGroupGet, get.SerializeAsString()) + rec(kGroupList, "") + rec(kGroupAdd, members.SerializeAsString()) +
          rec(kGroupRemove, members.SerializeAsString()) + rec(kGroupUpdate, update.SerializeAsString()) +
          rec(kGroupLeave, gid.SerializeAsString()) + rec(kGroupDismiss, gid.SerializeAsString()));
  v1::HistoryReq ghist;
  ghist.set_conv_type(v1::GROUP);
  ghist.set_peer("g2");
  ghist.set_after_seq(1);
  ghist.set_limit(3);
  v1::GroupCreateReq create2 = create;
  create2.set_gid("g2");
  v1::GroupGetReq page;
  page.set_gid("g2");
  page.set_with_members(true);
  page.set_members_after("bob");
  page.set_members_limit(1);
  v1::PullReq pull2;
  pull2.set_after_seq(1);
  pull2.set_limit(1000);
  put("dispatcher", "group_history",
      alice + rec(kGroupCreate, create2.SerializeAsString()) + rec(kSend, send("g2", "m6", v1::GROUP)) +
          rec(kSend, send("g2", "m7", v1::GROUP)) + rec(kHistory, ghist.SerializeAsString()) +
          rec(kGroupGet, page.SerializeAsString()) + rec(kPull, pull2.SerializeAsString()));
  put("dispatcher", "presence_report",
      alice + rec(kPresence, presence.SerializeAsString()) + rec(kReport, report.SerializeAsString()));
  v1::TypingReq typing;
  typing.set_conv_type(v1::C2C);
  typing.set_peer("alice");
  typing.set_state(v1::TYPING);
  v1::TypingReq stopped = typing;
  stopped.set_state(v1::STOPPED);
  v1::TypingReq group_typing = typing;
  group_typing.set_conv_type(v1::GROUP);
  group_typing.set_peer("g1");
  v1::PresenceWatchReq watch;
  watch.add_add("alice");
  watch.add_add("carol");
  v1::PresenceWatchReq clear;
  clear.set_clear(true);
  clear.add_remove("alice");
  put("dispatcher", "typing_watch",
      alice + "\xFE" + bob_web + rec(kTyping, typing.SerializeAsString()) + rec(kTyping, stopped.SerializeAsString()) +
          rec(kTyping, group_typing.SerializeAsString()) + rec(kPresenceWatch, watch.SerializeAsString()) +
          rec(kPresenceWatch, clear.SerializeAsString()) + rec(kPresenceWatch, watch.SerializeAsString()) +
          rec(kLogout, ""));
  put("dispatcher", "two_sessions", alice + "\xFE" + bob_web + rec(kSend, send("alice", "m4")) + rec(kLogout, ""));
  put("dispatcher", "anonymous", std::string(1, '\x80') + rec(kSend, send("bob", "m5")) + rec(kHeartbeat, "") +
                                     rec(kLogin, login.SerializeAsString()));
  put("dispatcher", "oddities", alice + rec(kHeartbeat, "", 4) + rec(kPush, "", 1) + rec(0x3F, "") +
                                    rec(kSend, "\xFF\xFF") + "\xFF\x00\x50" + std::string("\x00\x00\x00", 3));
}

// ---------------------------------------------------------------- admin

void admin() {
  put("admin", "body_message",
      "\x80" + std::string(R"({"from":"alice","conv_type":"c2c","to":"bob","content_type":1,"body":"aGk=","client_msg_id":"x"})"));
  put("admin", "body_bad", "\x80" + std::string(R"({"uid":1,"members":[1,"a"],"body":"***","persist":"yes"})"));
  put("admin", "token", std::string(1, '\x00') + R"({"uid":"alice","ttl_s":60})");
  put("admin", "message", std::string(1, '\x01') +
                              R"({"from":"alice","conv_type":"c2c","to":"bob","body":"aGk=","client_msg_id":"a1"})");
  put("admin", "push", std::string(1, '\x02') + R"({"to":"bob","topic":"t","payload":"cA==","persist":true})");
  put("admin", "group", std::string(1, '\x03') + R"({"gid":"ga","name":"n","owner":"alice","members":["bob"]})");
  put("admin", "members", std::string(1, '\x04') + "ga\n" + R"({"add":["carol"],"remove":["bob"]})");
  put("admin", "presence", std::string(1, '\x05') + "alice\n");
  put("admin", "kick", std::string(1, '\x06') + "bob\n");
  put("admin", "group_get", std::string(1, '\x07') + "ga\n");
  put("admin", "group_delete", std::string(1, '\x08') + "ga\n");
  put("admin", "wrong_key", std::string(1, '\x40') + R"({"uid":"alice"})");
}

std::string read_file(const char* path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: fuzz_make_corpus <fuzz/corpus> [config/im.toml]\n");
    return 2;
  }
  g_root = argv[1];
  frame_decoder();
  decompress();
  ws();
  jwt();
  config(argc > 2 ? read_file(argv[2]) : std::string());
  dispatcher();
  admin();
  return 0;
}
