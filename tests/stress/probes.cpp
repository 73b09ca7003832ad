#include "probes.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <fmt/format.h>
#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>
#include <vector>

#include "conn.h"
#include "im/frame_codec.h"
#include "proto/im.pb.h"

namespace im::stress {
namespace {

using Clock = std::chrono::steady_clock;

std::string status_text(const std::optional<Frame>& answer) {
  return answer ? std::string(status_name(answer->status())) : "no answer";
}

// A blocking TCP socket to 127.0.0.1:port whose connect, sends and receives
// give up after `timeout_ms`; -1 when the connect failed.
int open_raw(std::uint16_t port, int timeout_ms) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Closes with a reset: no TIME_WAIT left on this side.
void close_reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

// What the server did to a raw socket so far: "open", "closed", "reset" or
// "ERROR <status>" (the frame it sent before closing).
std::string state_of(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, 0) <= 0) return "open";
  char buf[64];
  const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n == 0) return "closed";
  if (n < 0) return errno == EAGAIN ? "open" : "reset";
  if (n >= 20 && static_cast<unsigned char>(buf[4]) == 0 && static_cast<unsigned char>(buf[5]) == 0xFF) {
    const auto status =
        static_cast<StatusCode>((static_cast<unsigned char>(buf[6]) << 8) | static_cast<unsigned char>(buf[7]));
    return "ERROR " + std::string(status_name(status));
  }
  return "sent something else";
}

// Sleeps until `t0 + i / per_second`.
void pace(Clock::time_point t0, int i, int per_second) {
  std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<std::int64_t>(i) * 1000000 / per_second));
}

std::unique_ptr<Conn> logged_in(const ProbeTarget& t, std::uint16_t port, const std::string& uid, std::string& why,
                                v1::DeviceType device = v1::DESKTOP, const std::string& device_id = "probe") {
  auto c = std::make_unique<Conn>();
  if (!c->connect(port)) {
    why = "connect failed";
    return nullptr;
  }
  if (!login(*c, uid, t.token(uid, 0), device, device_id, why)) return nullptr;
  return c;
}

}  // namespace

Probes::Probes(ProbeTarget target, std::uint64_t seed) : target_(std::move(target)), rng_(seed) {}

int Probes::scaled(int n) const {
  return std::max(1, static_cast<int>(n * target_.scale));
}

void Probes::tally(const std::string& probe, const std::string& what, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  tallies_[probe][what] += n;
}

std::map<std::string, std::map<std::string, std::uint64_t>> Probes::tallies() {
  std::lock_guard lock(mutex_);
  return tallies_;
}

std::string Probes::random_id(std::size_t length) {
  static constexpr char kAlphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::string s(length, 'a');
  for (char& c : s) c = kAlphabet[rng_() % (sizeof kAlphabet - 1)];
  return s;
}

void Probes::back_off(std::uint32_t ms) {
  const auto until = Clock::now() + std::chrono::milliseconds(std::min<std::uint32_t>(std::max(ms, 10u), 5000));
  while (!stopped() && Clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

void Probes::run() {
  const std::vector<std::pair<const char*, void (Probes::*)()>> probes = {
      {"big_groups", &Probes::big_groups},
      {"big_group_sends", &Probes::big_group_sends},
      {"announcements", &Probes::announcements},
      {"big_reports", &Probes::big_reports},
      {"history_flood", &Probes::history_flood},
      {"absent_groups", &Probes::absent_groups},
      {"one_uid_logins", &Probes::one_uid_logins},
      {"expiring_sessions", &Probes::expiring_sessions},
      {"unauthenticated", &Probes::unauthenticated},
      {"metrics_ranges", &Probes::metrics_ranges},
      {"connection_flood", &Probes::connection_flood},
  };
  while (!target_.stop->load()) {
    for (const auto& [name, probe] : probes) {
      if (target_.stop->load()) return;
      if (!target_.only.empty() && !target_.only.count(name)) continue;
      deadline_ = Clock::now() + target_.budget;
      (this->*probe)();
      tally(name, "rounds");
      deadline_ = Clock::now() + std::chrono::seconds(1);
      back_off(1000);  // let the mixed load have the server for a moment
    }
    ++rounds_;
  }
}

void Probes::big_groups() {
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-groups", why);
  if (!c) return tally("big_groups", "LOGIN failed: " + why);
  for (int i = 0; i < scaled(50) && !stopped(); ++i) {
    v1::GroupCreateReq req;
    req.set_name("big");
    for (int m = 0; m < 900; ++m) req.add_members(random_id(60));
    auto answer = c->call(Cmd::kGroupCreate, req, std::chrono::seconds(30));
    tally("big_groups", "GROUP_CREATE " + status_text(answer));
    if (answer && answer->status() == StatusCode::kRateLimited) back_off(answer->retry_after_ms());
    if (!c->open()) return tally("big_groups", "connection lost");
  }
}

bool Probes::ensure_big_group() {
  if (!big_gid_.empty()) return true;
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-owner", why);
  if (!c) {
    tally("big_group_sends", "LOGIN failed: " + why);
    return false;
  }
  v1::GroupCreateReq req;
  req.set_gid(fmt::format("probe-big-{}", random_id(8)));
  req.set_name("two thousand");
  for (int m = 0; m < 1999; ++m) req.add_members(fmt::format("pm{}", m));
  for (int attempt = 0; attempt < 5 && !stopped(); ++attempt) {
    auto answer = c->call(Cmd::kGroupCreate, req, std::chrono::seconds(30));
    tally("big_group_sends", "GROUP_CREATE of 2,000 " + status_text(answer));
    if (answer && answer->ok()) {
      big_gid_ = req.gid();
      return true;
    }
    if (answer && answer->status() == StatusCode::kRateLimited) back_off(answer->retry_after_ms());
  }
  return false;
}

void Probes::big_group_sends() {
  if (!ensure_big_group()) return;
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-owner", why);
  if (!c) return tally("big_group_sends", "LOGIN failed: " + why);
  for (int i = 0; i < scaled(20) && !stopped(); ++i) {
    v1::SendReq req;
    req.set_client_msg_id(fmt::format("big.{}", ++counter_));
    req.set_conv_type(v1::GROUP);
    req.set_to(big_gid_);
    req.set_content_type(1);
    req.set_body(std::string(32768, static_cast<char>('a' + i % 26)));
    auto answer = c->call(Cmd::kSend, req, std::chrono::seconds(30));
    tally("big_group_sends", "SEND 32 KiB " + status_text(answer));
    if (answer && answer->status() == StatusCode::kRateLimited) back_off(answer->retry_after_ms());
    if (!c->open()) return tally("big_group_sends", "connection lost");
  }
}

void Probes::announcements() {
  if (!ensure_big_group()) return;
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-owner", why);
  if (!c) return tally("announcements", "LOGIN failed: " + why);
  for (int i = 0; i < scaled(20) && !stopped(); ++i) {
    v1::GroupUpdateReq req;
    req.set_gid(big_gid_);
    req.set_announcement(std::string(4096, static_cast<char>('A' + i % 26)));
    auto answer = c->call(Cmd::kGroupUpdate, req, std::chrono::seconds(30));
    tally("announcements", "GROUP_UPDATE 4 KiB " + status_text(answer));
    if (answer && answer->status() == StatusCode::kRateLimited) back_off(answer->retry_after_ms());
    if (!c->open()) return tally("announcements", "connection lost");
  }
}

void Probes::big_reports() {
  for (const bool webhook : {true, false}) {
    std::string why;
    auto c = logged_in(target_, webhook ? target_.port : target_.plain_port, "probe-reports", why);
    const std::string label = webhook ? "REPORT 30 KB, webhook on" : "REPORT 30 KB, no webhook";
    if (!c) {
      tally("big_reports", label + ": LOGIN failed: " + why);
      continue;
    }
    std::vector<std::pair<Cmd, std::string>> requests;
    for (int i = 0; i < scaled(50); ++i) {
      v1::ReportReq req;
      req.set_report_id(fmt::format("probe.{}", ++counter_));
      req.set_topic("big");
      req.set_payload(random_id(30000));
      requests.emplace_back(Cmd::kReport, req.SerializeAsString());
    }
    for (const auto& answer : c->calls(requests, std::chrono::seconds(30)))
      tally("big_reports", label + " " + status_text(answer));
  }
}

void Probes::history_flood() {
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-history", why);
  if (!c) return tally("history_flood", "LOGIN failed: " + why);
  const int total = scaled(100000);
  for (int done = 0; done < total && !stopped() && c->open();) {
    std::vector<std::pair<Cmd, std::string>> requests;
    for (int i = 0; i < 500 && done + i < total; ++i) {
      v1::HistoryReq req;
      req.set_conv_type(v1::C2C);
      req.set_peer(random_id(16));
      requests.emplace_back(Cmd::kHistory, req.SerializeAsString());
    }
    done += static_cast<int>(requests.size());
    for (const auto& answer : c->calls(requests, std::chrono::seconds(30)))
      tally("history_flood", "HISTORY " + status_text(answer));
  }
}

void Probes::absent_groups() {
  std::string why;
  auto c = logged_in(target_, target_.port, "probe-groupget", why);
  if (!c) return tally("absent_groups", "LOGIN failed: " + why);
  const int total = scaled(100000);
  for (int done = 0; done < total && !stopped() && c->open();) {
    std::vector<std::pair<Cmd, std::string>> requests;
    for (int i = 0; i < 500 && done + i < total; ++i) {
      v1::GroupGetReq req;
      req.set_gid("absent-" + random_id(16));
      requests.emplace_back(Cmd::kGroupGet, req.SerializeAsString());
    }
    done += static_cast<int>(requests.size());
    for (const auto& answer : c->calls(requests, std::chrono::seconds(30)))
      tally("absent_groups", "GROUP_GET " + status_text(answer));
  }
}

void Probes::one_uid_logins() {
  const int total = scaled(20000);
  const auto t0 = Clock::now();
  for (int i = 0; i < total && !stopped(); ++i) {
    pace(t0, i, 2000);  // under limits.accept_per_second
    Conn c;
    if (!c.connect(target_.port, std::chrono::seconds(2))) {
      tally("one_uid_logins", "connect failed");
      continue;
    }
    std::string why;
    const auto device = static_cast<v1::DeviceType>(1 + rng_() % 4);
    auto resp = login(c, "probe-devices", target_.token("probe-devices", 0), device, fmt::format("dev{}", i), why);
    tally("one_uid_logins", resp ? "LOGIN OK" : "LOGIN " + why);
    c.close(true);
  }
}

void Probes::expiring_sessions() {
  const int n = scaled(100);
  const std::int64_t exp_s =
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count() + 3;
  std::vector<std::unique_ptr<Conn>> sessions;
  for (int i = 0; i < n && !stopped(); ++i) {
    auto c = std::make_unique<Conn>();
    std::string why;
    const std::string uid = fmt::format("probe-exp-{}", i);
    if (!c->connect(target_.port) || !login(*c, uid, target_.token(uid, exp_s), v1::WEB, "exp", why)) {
      tally("expiring_sessions", "LOGIN failed: " + why);
      continue;
    }
    sessions.push_back(std::move(c));
  }
  // exp is at most 3 s away; the server kicks within a second of it.
  const auto deadline = Clock::now() + std::chrono::seconds(6);
  std::vector<bool> kicked(sessions.size(), false);
  while (Clock::now() < deadline && !stopped()) {
    for (std::size_t i = 0; i < sessions.size(); ++i) {
      sessions[i]->pump(std::chrono::milliseconds(1));
      for (auto& f : sessions[i]->take_started()) {
        v1::Kickout k;
        if (f.header.cmd == Cmd::kKickout && f.parse(k) && k.reason() == v1::TOKEN_EXPIRED) kicked[i] = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  // Only a wait that ran to its end says anything about the server.
  const bool waited = Clock::now() >= deadline;
  for (std::size_t i = 0; i < sessions.size(); ++i) {
    if (kicked[i]) {
      tally("expiring_sessions", "KICKOUT TOKEN_EXPIRED");
    } else if (!waited) {
      tally("expiring_sessions", "not watched until exp (the soak or the budget ended first)");
    } else {
      tally("expiring_sessions", sessions[i]->open() ? "still open 3 s after exp" : "closed without KICKOUT");
    }
    sessions[i]->close(true);
  }
}

void Probes::unauthenticated() {
  const int total = scaled(10000);
  std::vector<int> fds;
  const auto t0 = Clock::now();
  for (int i = 0; i < total && !stopped(); ++i) {
    pace(t0, i, 2500);
    const int fd = open_raw(target_.port, 500);
    if (fd < 0) {
      tally("unauthenticated", "connect failed");
      continue;
    }
    // A LOGIN frame claiming the whole pre-login limit (one in ten: one
    // byte over it), of which all but the last 384 bytes are sent.
    FrameHeader h;
    h.cmd = Cmd::kLogin;
    h.seq = 1;
    const std::uint32_t body_len = kMaxPreLoginBody + (i % 10 == 0 ? 1 : 0);
    std::string frame = encode_frame(h, std::string(body_len, 'x'));
    frame.resize(frame.size() - 384);
    const ssize_t sent = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
    tally("unauthenticated", sent == static_cast<ssize_t>(frame.size()) ? "big frame sent" : "send cut short");
    fds.push_back(fd);
  }
  // Held until the server's auth timeout (10 s by default) should have
  // closed them all: 12 s after the last one opened, or what the budget
  // leaves.
  const auto opened = Clock::now();
  while (Clock::now() < opened + std::chrono::seconds(12) && !stopped())
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto held_s = std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - opened).count();
  for (int fd : fds) {
    tally("unauthenticated", fmt::format("{} s after the last opened: {}", held_s, state_of(fd)));
    close_reset(fd);
  }
}

void Probes::metrics_ranges() {
  httplib::Client cli("127.0.0.1", target_.admin_port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(10, 0);
  std::string many, overlapping;
  for (int i = 0; i < 200; ++i) many += fmt::format("{}{}-{}", i ? "," : "", i * 2, i * 2);
  for (int i = 0; i < 200; ++i) overlapping += fmt::format("{}0-", i ? "," : "");
  for (int i = 0; i < scaled(50) && !stopped(); ++i) {
    const std::string& ranges = i % 2 ? many : overlapping;
    auto r = cli.Get("/metrics", {{"Range", "bytes=" + ranges}});
    if (!r) {
      tally("metrics_ranges", "no answer");
      continue;
    }
    tally("metrics_ranges", fmt::format("HTTP {}", r->status));
    tally("metrics_ranges", "body bytes received", r->body.size());
  }
}

void Probes::connection_flood() {
  // Twice what limits.accept_per_second (5,000 in the soak's config) lets
  // through in a second, as fast as connect() goes.
  const int total = scaled(12000);
  std::vector<int> fds;
  const auto t0 = Clock::now();
  for (int i = 0; i < total && !stopped() && Clock::now() - t0 < std::chrono::seconds(3); ++i) {
    const int fd = open_raw(target_.port, 300);
    if (fd < 0) {
      tally("connection_flood", "connect failed");
      continue;
    }
    fds.push_back(fd);
  }
  tally(
      "connection_flood",
      fmt::format("opened in {} ms", std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()),
      fds.size());
  const auto wait_until = Clock::now() + std::chrono::seconds(2);
  while (Clock::now() < wait_until && !stopped()) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (int fd : fds) {
    tally("connection_flood", "after 2 s: " + state_of(fd));
    close_reset(fd);
  }
}

}  // namespace im::stress
