#include <catch2/catch.hpp>
#include <random>
#include <string>
#include <vector>

#include "im/frame_codec.h"

using namespace im;

namespace {

constexpr std::uint32_t kLimit = 65536;

FrameHeader request(Cmd cmd, std::uint32_t seq) {
  FrameHeader h;
  h.cmd = cmd;
  h.seq = seq;
  return h;
}

// Feeds `stream` to the decoder in chunks of the given sizes, keeping the
// unconsumed bytes as a connection does; returns the decoded frames.
std::vector<std::pair<FrameHeader, std::string>> feed(const std::string& stream, const std::vector<std::size_t>& cuts) {
  std::vector<std::pair<FrameHeader, std::string>> out;
  std::string pending;
  std::size_t pos = 0;
  for (std::size_t cut : cuts) {
    pending.append(stream.substr(pos, cut));
    pos += cut;
    for (;;) {
      Decoded d = decode_frame(pending, kLimit);
      REQUIRE(d.status != DecodeStatus::kBad);
      if (d.status == DecodeStatus::kNeedMore) {
        REQUIRE(d.consumed == 0);
        break;
      }
      out.emplace_back(d.header, std::string(d.body));
      pending.erase(0, d.consumed);
    }
  }
  REQUIRE(pending.empty());
  return out;
}

}  // namespace

TEST_CASE("a frame encodes to the header of the protocol, byte by byte") {
  FrameHeader h;
  h.flags = kFlagResponse;
  h.cmd = Cmd::kLogin;
  h.status = StatusCode::kUnauthenticated;
  h.seq = 0x01020304;
  const std::string f = encode_frame(h, "xyz");
  const std::string expected("\x49\x4D\x01\x01\x00\x02\x00\x02\x01\x02\x03\x04\x00\x00\x00\x03\x00\x00\x00\x00xyz", 23);
  CHECK(f == expected);
}

TEST_CASE("decode returns the fields encoded") {
  FrameHeader h = request(Cmd::kSend, 77);
  const std::string f = encode_frame(h, std::string("body\0bytes", 10));
  Decoded d = decode_frame(f, kLimit);
  REQUIRE(d.status == DecodeStatus::kFrame);
  CHECK(d.consumed == f.size());
  CHECK(d.header.cmd == Cmd::kSend);
  CHECK(d.header.seq == 77);
  CHECK(d.header.flags == 0);
  CHECK(d.header.status == StatusCode::kOk);
  CHECK(d.header.body_len == 10);
  CHECK(d.body == std::string("body\0bytes", 10));
}

TEST_CASE("reserved bytes and unknown flag bits are ignored") {
  std::string f = encode_frame(request(Cmd::kHeartbeat, 1), "");
  f[3] = '\xFE';
  f[16] = '\x7F';
  f[19] = '\x01';
  Decoded d = decode_frame(f, kLimit);
  REQUIRE(d.status == DecodeStatus::kFrame);
  CHECK_FALSE(d.header.is_response());
}

TEST_CASE("a frame fed one byte at a time decodes once, at its last byte") {
  const std::string f = encode_frame(request(Cmd::kPresence, 9), std::string(300, 'p'));
  for (std::size_t n = 0; n < f.size(); ++n) {
    Decoded d = decode_frame(std::string_view(f).substr(0, n), kLimit);
    CHECK(d.status == DecodeStatus::kNeedMore);
  }
  CHECK(decode_frame(f, kLimit).status == DecodeStatus::kFrame);
}

TEST_CASE("many frames in one read and frames split at random points decode in order") {
  std::string stream;
  std::vector<std::string> bodies;
  std::mt19937 rng(12345);
  for (std::uint32_t i = 1; i <= 200; ++i) {
    bodies.push_back(std::string(rng() % 700, static_cast<char>('a' + i % 26)));
    stream += encode_frame(request(Cmd::kSend, i), bodies.back());
  }
  SECTION("all at once") {
    auto frames = feed(stream, {stream.size()});
    REQUIRE(frames.size() == 200);
    for (std::uint32_t i = 0; i < 200; ++i) CHECK(frames[i].first.seq == i + 1);
  }
  SECTION("random splits") {
    for (int round = 0; round < 50; ++round) {
      std::vector<std::size_t> cuts;
      std::size_t left = stream.size();
      while (left > 0) {
        std::size_t c = std::min<std::size_t>(left, 1 + rng() % 97);
        cuts.push_back(c);
        left -= c;
      }
      auto frames = feed(stream, cuts);
      REQUIRE(frames.size() == 200);
      for (std::uint32_t i = 0; i < 200; ++i) {
        CHECK(frames[i].first.seq == i + 1);
        CHECK(frames[i].second == bodies[i]);
      }
    }
  }
  SECTION("byte by byte") {
    auto frames = feed(stream, std::vector<std::size_t>(stream.size(), 1));
    REQUIRE(frames.size() == 200);
  }
}

TEST_CASE("framing violations are reported as soon as the bytes show them") {
  const std::string good = encode_frame(request(Cmd::kHeartbeat, 1), "");
  SECTION("wrong magic, after two bytes") {
    std::string f = good;
    f[1] = 'X';
    Decoded d = decode_frame(std::string_view(f).substr(0, 2), kLimit);
    CHECK(d.status == DecodeStatus::kBad);
    CHECK(d.error == StatusCode::kBadFrame);
    CHECK(decode_frame(std::string_view(f).substr(0, 1), kLimit).status == DecodeStatus::kNeedMore);
  }
  SECTION("unknown version, after three bytes") {
    std::string f = good;
    f[2] = 2;
    Decoded d = decode_frame(std::string_view(f).substr(0, 3), kLimit);
    CHECK(d.status == DecodeStatus::kBad);
    CHECK(d.error == StatusCode::kUnsupportedVersion);
  }
  SECTION("version 0") {
    std::string f = good;
    f[2] = 0;
    CHECK(decode_frame(f, kLimit).error == StatusCode::kUnsupportedVersion);
  }
  SECTION("body_len over the limit, before any body byte, 2 GiB included") {
    for (std::uint32_t len : {kLimit + 1, 0x80000000u, 0xFFFFFFFFu}) {
      std::string f = good;
      f[12] = static_cast<char>(len >> 24);
      f[13] = static_cast<char>(len >> 16);
      f[14] = static_cast<char>(len >> 8);
      f[15] = static_cast<char>(len);
      Decoded d = decode_frame(f, kLimit);
      CHECK(d.status == DecodeStatus::kBad);
      CHECK(d.error == StatusCode::kFrameTooLarge);
    }
  }
  SECTION("body_len exactly at the limit is fine") {
    std::string f = encode_frame(request(Cmd::kSend, 1), std::string(kLimit, 'x'));
    CHECK(decode_frame(f, kLimit).status == DecodeStatus::kFrame);
    CHECK(decode_frame(std::string_view(f).substr(0, f.size() - 1), kLimit).status == DecodeStatus::kNeedMore);
  }
}

TEST_CASE("random bytes never crash the decoder and never claim more than they hold") {
  std::mt19937 rng(99);
  for (int round = 0; round < 20000; ++round) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    if (round % 2 == 0 && junk.size() >= 3) {
      junk[0] = 'I';
      junk[1] = 'M';
      junk[2] = 1;
    }
    Decoded d = decode_frame(junk, kLimit);
    if (d.status == DecodeStatus::kFrame) {
      CHECK(d.consumed <= junk.size());
      CHECK(d.consumed == kHeaderSize + d.body.size());
    } else {
      CHECK(d.consumed == 0);
    }
  }
}

TEST_CASE("status and command names follow the protocol tables") {
  CHECK(status_name(StatusCode::kFrameTooLarge) == "FRAME_TOO_LARGE");
  CHECK(status_name(static_cast<StatusCode>(999)) == "UNKNOWN");
  CHECK(cmd_name(Cmd::kGroupRemoveMembers) == "GROUP_REMOVE_MEMBERS");
}
