#include "support/core_fixture.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>

#include <spdlog/spdlog.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include "config/config_loader.h"
#include "core/client_context.h"
#include "fuzz.h"
#include "im/frame_codec.h"
#include "proto/im.pb.h"

namespace im::fuzz {
namespace {

constexpr auto kAnswerTimeout = std::chrono::seconds(30);

std::string make_temp_dir() {
  const char* base = std::getenv("TMPDIR");
  std::string templ = std::string(base && *base ? base : "/tmp") + "/imfuzz-XXXXXX";
  if (!mkdtemp(templ.data())) {
    std::perror("fuzz: mkdtemp");
    std::abort();
  }
  return templ;
}

}  // namespace

CoreFixture& CoreFixture::get() {
  static CoreFixture fixture;
  return fixture;
}

CoreFixture::CoreFixture() : dir_(make_temp_dir()) {
  spdlog::set_level(spdlog::level::err);  // a log line per input would drown the fuzzer's own
  config_.storage.data_dir = dir_ + "/data";
  config_.sharding.shards = 2;  // C2C, groups and presence cross shards
  config_.auth.jwt_secret = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
  config_.push.offline_delay_ms = 100;  // offline pushes fire while fuzzing
  // Reports and offline pushes are queued in the outbox only when a webhook
  // is set; no worker runs here, so nothing is ever sent to it.
  config_.webhook.url = "http://127.0.0.1:9/";
  config_.webhook.secret = "fuzz-webhook-secret-fuzz-webhook-secret";
  config_.limits.max_group_members = 64;  // the same rules, smaller fan-outs
  config_.admin.listen = "127.0.0.1:0";
  config_.admin.api_key = kAdminKey;
  if (auto ok = validate_config(config_); !ok) {
    std::fprintf(stderr, "fuzz: bad fixture config: %s\n", ok.error().message.c_str());
    std::abort();
  }
  limits_.max_frame_bytes = config_.server.max_frame_bytes;
  limits_.max_pending_bytes = config_.server.max_pending_bytes;
  limits_.auth_timeout_ms = config_.server.auth_timeout_ms;
  limits_.idle_timeout_ms = config_.heartbeat.timeout_s * 1000;
  admission_ = std::make_unique<net::AdmissionControl>(1000000, 10000000, 0);
  service_ = std::make_unique<core::Service>(config_);
  service_->start();
  loop_ = std::make_unique<net::IoLoop>(0, limits_, *service_, *admission_);
  work_.emplace(loop_->context().get_executor());
}

CoreFixture::~CoreFixture() {
  // As im::Server stops: the shards first, while the loop their queued work
  // may post to still exists; then the loop; then the rest of the core.
  if (admin_) admin_->stop();
  admin_.reset();
  work_.reset();
  service_->stop();
  loop_.reset();
  service_.reset();
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

http::AdminServer& CoreFixture::admin() {
  if (!admin_) {
    admin_ = std::make_unique<http::AdminServer>(config_, *service_, draining_);
    admin_->start();
  }
  return *admin_;
}

void CoreFixture::settle_shards() {
  for (std::size_t i = 0; i < service_->shard_count(); ++i) {
    std::promise<void> done;
    auto ran = done.get_future();
    asio::post(service_->shard(i).context(), [&done] { done.set_value(); });
    ran.wait();
  }
}

// ---------------------------------------------------------------- FuzzClient

FuzzClient::FuzzClient(CoreFixture& fx) : fx_(fx) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) {
    std::perror("fuzz: socketpair");
    std::abort();
  }
  peer_fd_ = sv[1];
  net::Connection::Socket socket(fx.loop().context().get_executor());
  asio::error_code ec;
  socket.assign(asio::ip::tcp::v4(), sv[0], ec);
  FUZZ_CHECK(!ec);
  static std::uint64_t next_key = 1;
  peer_key_ = next_key++;
  FUZZ_CHECK(!fx.admission().try_admit(peer_key_));
  conn_ = std::make_shared<net::Connection>(fx.loop(), std::move(socket), peer_key_, fx.transport());
  fx.loop().add(conn_);
  conn_->start();
}

FuzzClient::~FuzzClient() {
  close();
  if (peer_fd_ >= 0) ::close(peer_fd_);
}

void FuzzClient::close() {
  if (conn_->is_open()) conn_->close();
  pump();
}

bool FuzzClient::usable() const {
  return conn_->phase() < net::Connection::Phase::kClosing;
}

bool FuzzClient::logged_in() const {
  return usable() && core::Service::context_of(*conn_).phase == core::ClientContext::Phase::kLoggedIn;
}

std::uint32_t FuzzClient::frame_limit() const {
  const std::uint32_t configured = fx_.config().server.max_frame_bytes;
  return conn_->phase() == net::Connection::Phase::kHandshake ? std::min(configured, kMaxPreLoginBody) : configured;
}

bool FuzzClient::login(const std::string& uid, int device_type, const std::string& device_id) {
  v1::LoginReq req;
  req.set_uid(uid);
  req.set_token(fx_.service().mint_token(uid, 3600));
  req.set_device_type(static_cast<v1::DeviceType>(device_type));
  req.set_device_id(device_id);
  FrameHeader h;
  h.cmd = Cmd::kLogin;
  h.seq = next_seq();
  auto answer = request(h, req.SerializeAsString());
  return answer && answer->header.status == StatusCode::kOk && logged_in();
}

std::optional<PeerFrame> FuzzClient::request(FrameHeader h, std::string_view body) {
  if (!usable()) return std::nullopt;
  h.body_len = static_cast<std::uint32_t>(body.size());
  const std::size_t first = received_.size();
  const auto& ctx = core::Service::context_of(*conn_);
  // ACK and TYPING are answered only when they fail; client responses and
  // the requests of an ended session not at all.
  const bool due = !h.is_response() && ctx.phase != core::ClientContext::Phase::kEnded && h.cmd != Cmd::kAck &&
                   h.cmd != Cmd::kTyping;
  auto answer = [&]() -> std::optional<PeerFrame> {
    for (std::size_t i = first; i < received_.size(); ++i) {
      const FrameHeader& a = received_[i].header;
      if (a.is_response() && a.seq == h.seq && a.cmd == h.cmd) return received_[i];
    }
    return std::nullopt;
  };
  // As Connection::dispatch does, on the connection's loop thread (this one).
  fx_.loop().service().on_frame(*conn_, h, body);
  const auto deadline = std::chrono::steady_clock::now() + kAnswerTimeout;
  for (;;) {
    pump();
    if (auto a = answer()) return a;
    if (!due || !usable()) {
      // Whatever it posted has run (a closing connection sends nothing more).
      fx_.settle_shards();
      pump();
      return answer();
    }
    if (std::chrono::steady_clock::now() > deadline) {
      std::fprintf(stderr, "fuzz: %s (seq %u) was never answered\n", std::string(cmd_name(h.cmd)).c_str(), h.seq);
      std::abort();
    }
    fx_.loop().context().run_one_for(std::chrono::milliseconds(1));
  }
}

void FuzzClient::pump() {
  asio::io_context& ctx = fx_.loop().context();
  for (int round = 0; round < 1000; ++round) {
    if (ctx.stopped()) ctx.restart();
    const std::size_t ran = ctx.poll();
    read_peer();
    if (ran == 0) break;
  }
}

void FuzzClient::read_peer() {
  if (peer_fd_ < 0) return;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(peer_fd_, buf, sizeof buf);
    if (n <= 0) break;
    peer_buf_.append(buf, static_cast<std::size_t>(n));
  }
  std::size_t used = 0;
  for (;;) {
    const Decoded d = decode_frame(std::string_view(peer_buf_).substr(used), 1u << 30);
    // What the server sends is always well framed.
    FUZZ_CHECK(d.status != DecodeStatus::kBad);
    if (d.status == DecodeStatus::kNeedMore) break;
    used += d.consumed;
    PeerFrame f{d.header, std::string(d.body)};
    // Every error answer carries an Error; a PUSH or KICKOUT parses.
    if (f.header.is_response() && f.header.status != StatusCode::kOk) {
      v1::Error e;
      FUZZ_CHECK(e.ParseFromString(f.body));
    } else if (f.header.cmd == Cmd::kPush) {
      v1::MessagePush p;
      FUZZ_CHECK(p.ParseFromString(f.body));
    } else if (f.header.cmd == Cmd::kKickout) {
      v1::Kickout k;
      FUZZ_CHECK(k.ParseFromString(f.body));
    }
    received_.push_back(std::move(f));
  }
  peer_buf_.erase(0, used);
}

}  // namespace im::fuzz
