// Every command's body handler, reached through the real dispatcher
// (core::Service::on_frame -> Dispatcher -> the command families -> the
// shards -> RocksDB) by a logged-in session on a real net::Connection
// (support/core_fixture.h).
//
// Input: byte 0 opens the first session (see open_session); then records,
// at most 64:
//   [sel] [flags] [len: u16 BE] [body: len bytes]
// sel < 32 picks kCmds[sel]; 0xFE opens another session (one byte follows,
// no flags or body; at most 4 sessions); 0xFF takes the cmd from the next two
// bytes; any other value is the cmd itself. flags: bit 0 sets RESPONSE, bit 1
// COMPRESSED, bit 2 sends seq 0. Frames go to the newest open session;
// bodies are cut to the connection's frame limit, as the decoder would.

#include <cstdlib>
#include <iterator>
#include <memory>
#include <vector>

#include "fuzz.h"
#include "proto/im.pb.h"
#include "support/core_fixture.h"

namespace {

using im::Cmd;
using im::fuzz::CoreFixture;
using im::fuzz::FuzzClient;

constexpr Cmd kCmds[] = {
    Cmd::kHeartbeat,       Cmd::kLogin,           Cmd::kLogout,        Cmd::kKickout,
    Cmd::kSend,            Cmd::kPush,            Cmd::kAck,           Cmd::kPull,
    Cmd::kHistory,         Cmd::kGroupCreate,     Cmd::kGroupGet,      Cmd::kGroupList,
    Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers, Cmd::kGroupLeave, Cmd::kGroupUpdate,
    Cmd::kGroupDismiss,    Cmd::kPresence,        Cmd::kReport,        Cmd::kServerPush,
    Cmd::kError,           Cmd{0x0050},           Cmd{0x0051},         Cmd{0x0052},
    Cmd{0x0053},           Cmd{0x0054},           Cmd{0x0055},         Cmd{0x0000},
    Cmd{0x0015},           Cmd{0x00FE},           Cmd{0x0100},         Cmd{0xFFFF},
};
static_assert(std::size(kCmds) == 32);

constexpr std::size_t kMaxRecords = 64;
constexpr std::size_t kMaxSessions = 4;

// who: bits 0-1 the uid (kUids), bits 2-4 the device type (0-4, 5-7 wrap),
// bits 5-6 the device id; bit 7 set leaves the session anonymous.
std::unique_ptr<FuzzClient> open_session(CoreFixture& fx, std::uint8_t who) {
  auto c = std::make_unique<FuzzClient>(fx);
  if ((who & 0x80) == 0) {
    const std::string uid = im::fuzz::kUids[who & 3];
    const int device_type = ((who >> 2) & 7) % 5;
    const bool ok = c->login(uid, device_type, "dev" + std::to_string((who >> 5) & 3));
    FUZZ_CHECK(ok);  // a valid LOGIN on a fresh connection always succeeds
  }
  return c;
}

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  CoreFixture& fx = CoreFixture::get();
  static const bool verbose = std::getenv("IM_FUZZ_VERBOSE") != nullptr;  // each request and its answer
  im::fuzz::Reader in(data, size);
  std::vector<std::unique_ptr<FuzzClient>> sessions;
  sessions.push_back(open_session(fx, in.byte()));
  for (std::size_t n = 0; n < kMaxRecords && !in.empty(); ++n) {
    const std::uint8_t sel = in.byte();
    if (sel == 0xFE) {
      const std::uint8_t who = in.byte();
      if (sessions.size() < kMaxSessions) sessions.push_back(open_session(fx, who));
      continue;
    }
    const Cmd cmd = sel < std::size(kCmds) ? kCmds[sel] : sel == 0xFF ? Cmd{in.u16()} : Cmd{sel};
    const std::uint8_t flags = in.byte();
    std::string_view body = in.bytes(in.u16());
    FuzzClient* c = nullptr;
    for (auto it = sessions.rbegin(); it != sessions.rend() && !c; ++it)
      if ((*it)->usable()) c = it->get();
    if (!c) break;
    if (body.size() > c->frame_limit()) body = body.substr(0, c->frame_limit());
    im::FrameHeader h;
    h.cmd = cmd;
    h.flags = static_cast<std::uint8_t>(((flags & 1) ? im::kFlagResponse : 0) | ((flags & 2) ? im::kFlagCompressed : 0));
    h.seq = (flags & 4) ? 0 : c->next_seq();
    const bool was_logged_in = c->logged_in();
    auto answer = c->request(h, body);
    if (verbose)
      std::fprintf(stderr, "fuzz: %s seq %u (%zu bytes) -> %s\n", std::string(im::cmd_name(cmd)).c_str(), h.seq,
                   body.size(), answer ? std::string(im::status_name(answer->header.status)).c_str() : "no answer");
    if (!answer) continue;
    // An answer is to this request, as a response; only LOGIN's may be OK
    // before login, and a wrong seq is refused.
    FUZZ_CHECK(answer->header.cmd == cmd && answer->header.is_response());
    if (!was_logged_in && cmd != Cmd::kHeartbeat && cmd != Cmd::kLogin)
      FUZZ_CHECK(answer->header.status != im::StatusCode::kOk);
    if (h.seq == 0) FUZZ_CHECK(answer->header.status == im::StatusCode::kBadRequest);
  }
  for (auto it = sessions.rbegin(); it != sessions.rend(); ++it) (*it)->close();
  sessions.clear();
  fx.settle_shards();
  return 0;
}
