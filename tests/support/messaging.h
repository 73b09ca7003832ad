#pragma once
// Helpers for tests that send and read messages through SyncClient.

#include <catch2/catch.hpp>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "im/client.h"
#include "im/frame_codec.h"
#include "proto/im.pb.h"
#include "server_process.h"
#include "wait_until.h"

namespace im::test {

inline v1::ReportReq report(const std::string& id, const std::string& topic, const std::string& payload) {
  v1::ReportReq r;
  r.set_report_id(id);
  r.set_topic(topic);
  r.set_payload(payload);
  return r;
}

// A REPORT with topic "t", answered.
inline Frame send_report(SyncClient& c, const std::string& id, const std::string& payload = "p") {
  auto r = report(id, "t", payload);
  return must(c.call(Cmd::kReport, &r));
}

inline v1::SendReq send_req(const std::string& to, const std::string& cmid, const std::string& body = "hello",
                            v1::ConvType type = v1::C2C, std::uint32_t content_type = 1) {
  v1::SendReq req;
  req.set_client_msg_id(cmid);
  req.set_conv_type(type);
  req.set_to(to);
  req.set_content_type(content_type);
  req.set_body(body);
  return req;
}

// A SEND that must succeed; its SendResp.
inline v1::SendResp send_ok(SyncClient& c, const v1::SendReq& req) {
  auto r = c.call(Cmd::kSend, &req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  v1::SendResp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

inline v1::SendResp send_ok(SyncClient& c, const std::string& to, const std::string& cmid,
                            const std::string& body = "hello") {
  return send_ok(c, send_req(to, cmid, body));
}

inline v1::PullResp pull(SyncClient& c, std::uint64_t after, std::uint32_t limit = 0) {
  v1::PullReq req;
  req.set_after_seq(after);
  req.set_limit(limit);
  auto r = c.call(Cmd::kPull, &req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  v1::PullResp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

// Every message of the inbox after `after`, by PULL until has_more is false.
inline std::vector<v1::Message> pull_all(SyncClient& c, std::uint64_t after = 0) {
  std::vector<v1::Message> out;
  for (int page = 0; page < 100000; ++page) {
    v1::PullResp resp = pull(c, after, 1000);
    for (const auto& m : resp.messages()) out.push_back(m);
    if (resp.messages_size() > 0) after = resp.messages(resp.messages_size() - 1).inbox_seq();
    if (!resp.has_more()) break;
  }
  return out;
}

// The inbox after `after`, pulled until `done` holds for it (at most 5 s):
// for rows that follow an answer (group events and group messages reach the
// other members' inboxes after the command or SEND is answered). Returns the
// last rows pulled either way: the caller's checks on them say what is missing.
template <class Done>
std::vector<v1::Message> pull_until(SyncClient& c, Done done, std::uint64_t after = 0) {
  std::vector<v1::Message> rows;
  (void)wait_until(
      [&] {
        rows = pull_all(c, after);
        return done(rows);
      },
      kWaitTimeout, std::chrono::milliseconds(20));
  return rows;
}

inline v1::HistoryResp history(SyncClient& c, v1::ConvType type, const std::string& peer, std::uint64_t before,
                               std::uint32_t limit = 0) {
  v1::HistoryReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_before_seq(before);
  req.set_limit(limit);
  auto r = c.call(Cmd::kHistory, &req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  v1::HistoryResp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

// The whole history of a conversation, oldest first.
inline std::vector<v1::Message> history_all(SyncClient& c, v1::ConvType type, const std::string& peer) {
  std::vector<v1::Message> out;
  std::uint64_t before = 0;
  for (int page = 0; page < 100000; ++page) {
    v1::HistoryResp resp = history(c, type, peer, before, 500);
    out.insert(out.begin(), resp.messages().begin(), resp.messages().end());
    if (!resp.has_more() || resp.messages_size() == 0) break;
    before = resp.messages(0).conv_seq();
  }
  return out;
}

// The messages of the next PUSH that `next()` returns (other frames skipped).
template <class NextFrame>
std::vector<v1::Message> next_push_from(NextFrame next) {
  for (int i = 0; i < 100; ++i) {
    std::optional<Frame> f = next();
    if (!f) return {};
    if (f->header.cmd != Cmd::kPush) continue;
    v1::MessagePush push;
    REQUIRE(f->parse(push));
    return {push.messages().begin(), push.messages().end()};
  }
  return {};
}

// The messages of the next PUSH frame (skipping other server frames).
inline std::vector<v1::Message> next_push(SyncClient& c, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  return next_push_from([&] { return c.next_frame(timeout); });
}

// One request frame, to pipeline several in one send_raw.
inline std::string request_frame(Cmd cmd, std::uint32_t seq, const google::protobuf::MessageLite& body) {
  FrameHeader h;
  h.cmd = cmd;
  h.seq = seq;
  return encode_frame(h, body.SerializeAsString());
}

// A HEARTBEAT header with its magic, version and body_len forged (framing tests).
inline std::string forged_header(std::uint16_t magic, std::uint8_t version, std::uint32_t body_len) {
  FrameHeader h;
  h.cmd = Cmd::kHeartbeat;
  h.seq = 1;
  std::string f = encode_frame(h, "");
  f[0] = static_cast<char>(magic >> 8);
  f[1] = static_cast<char>(magic);
  f[2] = static_cast<char>(version);
  f[12] = static_cast<char>(body_len >> 24);
  f[13] = static_cast<char>(body_len >> 16);
  f[14] = static_cast<char>(body_len >> 8);
  f[15] = static_cast<char>(body_len);
  return f;
}

// Collects pushed messages until `count` arrived (or nothing came for 5 s).
inline std::vector<v1::Message> pushed(SyncClient& c, std::size_t count) {
  std::vector<v1::Message> out;
  while (out.size() < count) {
    auto batch = next_push(c);
    if (batch.empty()) break;
    out.insert(out.end(), batch.begin(), batch.end());
  }
  return out;
}


// A request whose answer must be OK, parsed as Resp.
template <class Resp>
Resp call_ok(SyncClient& c, Cmd cmd, const google::protobuf::MessageLite& req) {
  auto r = c.call(cmd, &req);
  REQUIRE(r);
  INFO(r->error_message());
  REQUIRE(r->ok());
  Resp resp;
  REQUIRE(r->parse(resp));
  return resp;
}

// GROUP_CREATE that must succeed; its GroupResp.
inline v1::GroupResp create_group(SyncClient& c, const std::string& gid, std::vector<std::string> members,
                                  const std::string& name = "team") {
  v1::GroupCreateReq req;
  req.set_gid(gid);
  req.set_name(name);
  for (auto& m : members) req.add_members(m);
  return call_ok<v1::GroupResp>(c, Cmd::kGroupCreate, req);
}

// A server for the PROTOCOL 8 tests: no rate limit in the way, 4 shards,
// and `extra` on top.
inline Overrides fast_overrides(const Overrides& extra = {}) {
  return merged({{"limits.messages_per_second", "1000000"}, {"limits.burst", "1000000"}, {"sharding.shards", "4"}},
                extra);
}

inline v1::RecallReq recall_req(const std::string& cmid, v1::ConvType type, const std::string& peer,
                                std::uint64_t seq) {
  v1::RecallReq r;
  r.set_client_msg_id(cmid);
  r.set_conv_type(type);
  r.set_peer(peer);
  r.set_conv_seq(seq);
  return r;
}

inline v1::EditReq edit_req(const std::string& cmid, v1::ConvType type, const std::string& peer, std::uint64_t seq,
                            const std::string& body) {
  v1::EditReq r;
  r.set_client_msg_id(cmid);
  r.set_conv_type(type);
  r.set_peer(peer);
  r.set_conv_seq(seq);
  r.set_body(body);
  return r;
}

// CONV_LIST that must succeed.
inline v1::ConvListResp conv_list(SyncClient& c, std::uint32_t limit = 0, const std::string& cursor = "") {
  v1::ConvListReq req;
  req.set_limit(limit);
  req.set_cursor(cursor);
  return call_ok<v1::ConvListResp>(c, Cmd::kConvList, req);
}

// The conversation of `peer` in a listing (fails the test when absent).
inline v1::Conversation find_conv(const v1::ConvListResp& list, const std::string& peer) {
  for (const auto& c : list.conversations())
    if (c.peer() == peer) return c;
  FAIL("no conversation with " << peer);
  return {};
}

}  // namespace im::test
