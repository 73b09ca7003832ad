// core/wire: bodies assembled from stored Message rows must be exactly what
// the generated protobuf code reads back, and PUSH frames must split rows
// within the frame budget.

#include <catch2/catch.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/wire.h"
#include "im/frame_codec.h"
#include "proto/im.pb.h"

using im::core::wire::MessageRows;
using im::core::wire::push_frames;
namespace wire = im::core::wire;
namespace v1 = im::v1;

namespace {

constexpr std::uint32_t kAnyBodySize = 1u << 24;

// A stored inbox row: a serialized Message.
std::string row(std::uint64_t seq, std::size_t body_bytes = 10) {
  v1::Message m;
  m.set_msg_id(1'000'000 + seq);
  m.set_conv_type(v1::C2C);
  m.set_from("alice");
  m.set_to("bob");
  m.set_conv_seq(seq);
  m.set_inbox_seq(seq);
  m.set_client_msg_id("c" + std::to_string(seq));
  m.set_body(std::string(body_bytes, static_cast<char>('a' + seq % 26)));
  m.set_server_time_ms(1'700'000'000'000 + static_cast<std::int64_t>(seq));
  return m.SerializeAsString();
}

std::vector<std::string> rows(std::size_t n, std::size_t body_bytes = 10) {
  std::vector<std::string> out;
  for (std::size_t i = 1; i <= n; ++i) out.push_back(row(i, body_bytes));
  return out;
}

MessageRows filled(const std::vector<std::string>& in, std::size_t budget = 65536) {
  MessageRows r(budget);
  for (const auto& s : in) r.add(s);
  return r;
}

template <class Repeated>
std::vector<std::string> serialized(const Repeated& messages) {
  std::vector<std::string> out;
  for (const auto& m : messages) out.push_back(m.SerializeAsString());
  return out;
}

// What a row costs in a body: tag, length, bytes.
std::size_t row_cost(const std::string& r) {
  v1::MessagePush one;
  REQUIRE(one.add_messages()->ParseFromString(r));
  return one.ByteSizeLong();
}

struct Counter {
  std::uint32_t next = 100;
  std::uint32_t operator()() { return next++; }
};

}  // namespace

// ---------------------------------------------------------------- PullResp, HistoryResp

TEST_CASE("pull_resp: parses back to the rows in order and the fields put in") {
  const auto in = rows(5);
  const std::string body = wire::pull_resp(filled(in), true, 42, 7);
  v1::PullResp resp;
  REQUIRE(resp.ParseFromString(body));
  CHECK(serialized(resp.messages()) == in);
  CHECK(resp.has_more());
  CHECK(resp.inbox_max_seq() == 42);
  CHECK(resp.oldest_seq() == 7);
}

TEST_CASE("pull_resp: byte for byte what the generated code writes, zero values left out") {
  const auto in = rows(3);
  for (bool has_more : {false, true}) {
    for (std::uint64_t max_seq : {0ull, 1ull, 300ull, 1ull << 40}) {
      for (std::uint64_t oldest : {0ull, 1ull, 129ull}) {
        v1::PullResp expected;
        for (const auto& r : in) REQUIRE(expected.add_messages()->ParseFromString(r));
        expected.set_has_more(has_more);
        expected.set_inbox_max_seq(max_seq);
        expected.set_oldest_seq(oldest);
        CHECK(wire::pull_resp(filled(in), has_more, max_seq, oldest) == expected.SerializeAsString());
      }
    }
  }
}

TEST_CASE("pull_resp: an empty inbox answer is an empty body") {
  CHECK(wire::pull_resp(MessageRows(65536), false, 0, 0).empty());
}

TEST_CASE("history_resp: parses back to the rows in order and has_more") {
  const auto in = rows(4);
  v1::HistoryResp resp;
  REQUIRE(resp.ParseFromString(wire::history_resp(filled(in), true)));
  CHECK(serialized(resp.messages()) == in);
  CHECK(resp.has_more());
}

TEST_CASE("history_resp: has_more false is left out") {
  const auto in = rows(2);
  v1::HistoryResp expected;
  for (const auto& r : in) REQUIRE(expected.add_messages()->ParseFromString(r));
  CHECK(wire::history_resp(filled(in), false) == expected.SerializeAsString());
  CHECK(wire::history_resp(MessageRows(100), false).empty());
}

TEST_CASE("message rows: rows of every length keep their bytes (lengths past one varint byte)") {
  const std::vector<std::string> in{row(1, 0), row(2, 100), row(3, 200), row(4, 20000)};
  v1::HistoryResp resp;
  REQUIRE(resp.ParseFromString(wire::history_resp(filled(in), false)));
  CHECK(serialized(resp.messages()) == in);
}

// ---------------------------------------------------------------- the budget

TEST_CASE("message rows: a row fits exactly when its tag, length and bytes stay within the budget") {
  const std::string r = row(1, 300);
  const std::size_t cost = row_cost(r);
  CHECK(MessageRows(cost).fits(r));
  CHECK_FALSE(MessageRows(cost - 1).fits(r));
}

TEST_CASE("message rows: adding while rows fit never passes the budget") {
  const auto in = rows(100, 50);
  constexpr std::size_t kBudget = 1000;
  MessageRows body(kBudget);
  std::size_t added = 0;
  while (added < in.size() && body.fits(in[added])) body.add(in[added++]);
  REQUIRE(added > 0);
  REQUIRE(added < in.size());
  CHECK(body.count() == added);
  const std::string bytes = body.take();
  CHECK(bytes.size() <= kBudget);
  CHECK(bytes.size() + row_cost(in[added]) > kBudget);
}

TEST_CASE("message rows: take hands over the rows and starts empty") {
  MessageRows body(65536);
  CHECK(body.empty());
  body.add(row(1));
  body.add(row(2));
  CHECK(body.count() == 2);
  CHECK_FALSE(body.take().empty());
  CHECK(body.empty());
  CHECK(body.count() == 0);
  CHECK(body.take().empty());
}

// ---------------------------------------------------------------- response

TEST_CASE("response: echoes cmd and seq, sets RESPONSE and OK, carries the body") {
  im::FrameHeader request;
  request.cmd = im::Cmd::kPull;
  request.seq = 77;
  const auto frame = wire::response(request, "body bytes");
  const im::Decoded d = im::decode_frame(*frame, kAnyBodySize);
  REQUIRE(d.status == im::DecodeStatus::kFrame);
  CHECK(d.consumed == frame->size());
  CHECK(d.header.cmd == im::Cmd::kPull);
  CHECK(d.header.seq == 77);
  CHECK(d.header.is_response());
  CHECK(d.header.status == im::StatusCode::kOk);
  CHECK(d.body == "body bytes");
}

// ---------------------------------------------------------------- push_frames

TEST_CASE("push: rows are split over frames within the budget, in order, each a PUSH numbered by next_seq") {
  const auto in = rows(60, 200);
  const std::vector<std::string_view> views(in.begin(), in.end());
  constexpr std::size_t kBudget = 2000;
  Counter seqs;
  const auto frames = push_frames(views, kBudget, std::ref(seqs));
  REQUIRE(frames.size() > 1);
  CHECK(seqs.next == 100 + frames.size());  // one seq a frame

  std::vector<std::string> out;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const im::Decoded d = im::decode_frame(*frames[i], kAnyBodySize);
    REQUIRE(d.status == im::DecodeStatus::kFrame);
    CHECK(d.consumed == frames[i]->size());
    CHECK(d.header.cmd == im::Cmd::kPush);
    CHECK_FALSE(d.header.is_response());
    CHECK(d.header.status == im::StatusCode::kOk);
    CHECK(d.header.seq == 100 + i);
    CHECK(d.body.size() <= kBudget);
    v1::MessagePush push;
    REQUIRE(push.ParseFromArray(d.body.data(), static_cast<int>(d.body.size())));
    REQUIRE(push.messages_size() > 0);
    for (const auto& m : push.messages()) out.push_back(m.SerializeAsString());
  }
  CHECK(out == in);
}

TEST_CASE("push: each frame holds as many rows as fit (the next row would have passed the budget)") {
  const auto in = rows(40, 150);
  const std::vector<std::string_view> views(in.begin(), in.end());
  constexpr std::size_t kBudget = 1500;
  const auto frames = push_frames(views, kBudget, Counter{});
  std::size_t next_row = 0;
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const im::Decoded d = im::decode_frame(*frames[i], kAnyBodySize);
    REQUIRE(d.status == im::DecodeStatus::kFrame);
    v1::MessagePush push;
    REQUIRE(push.ParseFromArray(d.body.data(), static_cast<int>(d.body.size())));
    next_row += static_cast<std::size_t>(push.messages_size());
    if (i + 1 < frames.size()) CHECK(d.body.size() + row_cost(in[next_row]) > kBudget);
  }
  CHECK(next_row == in.size());
}

TEST_CASE("push: rows that all fit go out in one frame") {
  const auto in = rows(3);
  const std::vector<std::string_view> views(in.begin(), in.end());
  const auto frames = push_frames(views, 65536, Counter{});
  REQUIRE(frames.size() == 1);
  const im::Decoded d = im::decode_frame(*frames[0], kAnyBodySize);
  REQUIRE(d.status == im::DecodeStatus::kFrame);
  v1::MessagePush push;
  REQUIRE(push.ParseFromArray(d.body.data(), static_cast<int>(d.body.size())));
  CHECK(serialized(push.messages()) == in);
}

TEST_CASE("push: no rows make no frames and take no seq") {
  Counter seqs;
  CHECK(push_frames({}, 65536, std::ref(seqs)).empty());
  CHECK(seqs.next == 100);
}
