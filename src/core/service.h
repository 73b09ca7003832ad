#pragma once
// The protocol's business side: implements net::ServiceInterface, routes
// each cmd through one table to its handler, and owns the core shards.
//
// Handlers run on the connection's loop thread; work on a user's state is
// posted to the user's shard, which answers by posting back to the loop.

#include <array>
#include <atomic>
#include <memory>
#include <string_view>
#include <vector>

#include "auth/jwt.h"
#include "core/client_context.h"
#include "core/core_env.h"
#include "core/retention.h"
#include "core/shard.h"
#include "im/config.h"
#include "net/frames.h"
#include "net/service_interface.h"

namespace im::core {

class Service final : public net::ServiceInterface {
 public:
  explicit Service(const Config& config);
  ~Service() override;

  // Opens the store, starts the shards and finishes every fan-out a crash
  // left pending, before any traffic. Throws std::runtime_error.
  void start();
  void stop();  // after the loops have stopped, before they are destroyed

  std::unique_ptr<net::ConnectionContext> on_open(net::Connection& conn) override;
  void on_frame(net::Connection& conn, const FrameHeader& header, std::string_view body) override;
  void on_close(net::Connection& conn) override;

  // ---- operations for the admin API: any thread; `done` runs on a shard ----
  struct SendSpec {
    std::string from;
    int conv_type = 1;  // v1::ConvType
    std::string to;
    std::uint32_t content_type = 0;
    std::string body;
    std::string client_msg_id;
  };
  using SendDone = std::function<void(StatusCode, const std::string& error, const v1::SendResp&)>;
  // A SEND on behalf of `from`: dedupe, storage and delivery as any SEND,
  // PUSHed to every session of the sender too (no session sent it).
  void send_as(SendSpec spec, SendDone done);
  void server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                   std::function<void(std::uint64_t push_id, std::uint32_t delivered)> done);
  void presence(const std::string& uid, std::function<void(const PresenceInfo&)> done);
  // KICKOUT ADMIN to every session of the user.
  void kick_user(const std::string& uid, std::function<void(std::uint32_t kicked)> done);
  void group_command(std::shared_ptr<GroupCommand> cmd);
  std::string mint_token(const std::string& uid, std::int64_t ttl_s) const;
  // Takes what can change live from a new, validated config: the JWT
  // secret and the per-connection rate limit. Thread safe.
  void reload(const Config& fresh);
  store::Store& store() { return *store_; }

  // Loop thread: graceful shutdown of every connection of that loop
  // (KICKOUT SERVER_SHUTDOWN with a random reconnect_after_ms, then close).
  void drain(net::Connection& conn);

 private:
  using Handler = void (Service::*)(net::Connection&, ClientContext&, const FrameHeader&, std::string_view);

  void on_heartbeat(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_login(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_logout(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_presence(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_send(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_ack(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_pull(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_history(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  // Every GROUP_* command but GROUP_LIST.
  void on_group(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_group_list(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);
  void on_report(net::Connection& conn, ClientContext& ctx, const FrameHeader& h, std::string_view body);

  void recover_fanouts();
  // Shard thread: registers the session, kicks the one it replaces, answers.
  void login_in_shard(Shard& shard, std::shared_ptr<net::Connection> conn, FrameHeader request, SessionRef session,
                      std::string uid);
  // Any thread: sends KICKOUT to a session and closes it on its loop.
  void kick(const std::weak_ptr<net::Connection>& target, net::SharedFrame kickout);
  // Loop thread: tells the user's shard that this session is over.
  void end_session(ClientContext& ctx);

  Shard& shard_for(std::string_view uid) { return *shards_[shard_of(uid, shards_.size())]; }

  const Config& config_;
  // What SIGHUP may change while running (Service::reload).
  std::atomic<std::shared_ptr<const JwtVerifier>> verifier_;
  std::atomic<std::uint32_t> messages_per_second_;
  std::atomic<std::uint32_t> burst_;
  std::unique_ptr<store::Store> store_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::unique_ptr<CoreEnv> env_;
  std::unique_ptr<Retention> retention_;
  std::array<Handler, 256> routes_{};
};

// What is wrong with a group command's fields (kOk when nothing): the same
// rules for clients and the admin API.
std::pair<StatusCode, std::string> check_group_request(const GroupCommand& cmd, std::uint32_t max_group_members);

}  // namespace im::core
