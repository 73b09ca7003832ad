#pragma once
// ChatClient: one user's session with imserver, on top of Client
// (im/client.h), doing for the application what every chat client needs:
//
// - LOGIN with a token from the application's provider, asked again when the
//   server refuses the token (once; refused again, the client closes) or
//   expires it (KICKOUT TOKEN_EXPIRED);
// - HEARTBEAT at the server's interval (LoginResp); after two intervals
//   without any frame from the server the link is taken for dead;
// - reconnects with exponential backoff and full jitter, never sooner than a
//   KICKOUT's reconnect_after_ms or an admission refusal's retry_after_ms,
//   never after LOGIN_ELSEWHERE or ADMIN (the client closes);
// - resync after every login by PULL from the highest inbox seq held (kept
//   in a ChatStorage), ACKs of what it holds, and every inbox message given
//   to on_message exactly once and in inbox order, whether it came by PUSH,
//   PULL or as the answer to the client's own SEND;
// - SEND with an automatic client_msg_id through an outbox kept in the
//   storage and sent again after each login (the server dedupes retries);
// - the calls of PROTOCOL 8 and the groups, typed.
//
// Large groups (PROTOCOL 9, read fan-out) are not followed yet: a PUSH with
// inbox_seq 0 is given to on_message as it comes, with no per-group cursor
// or catch-up (use history() with after_seq). The JavaScript SDK does both.
//
// Delivery is exactly once within a run; across a crash of the application
// it is at least once (the resync point is saved just after the messages are
// given): deduplicate by msg_id where that matters.
//
// Threading. A ChatClient owns one I/O thread. Every callback (on_message,
// on_state, ..., the token provider and the callbacks of the *_async calls)
// runs on that thread, one at a time, in the order of events. Every public
// method may be called from any thread. The methods that return a future
// must not be waited on from a callback (the thread that would answer is the
// one waiting): use the *_async form there, or post the wait elsewhere.
// close() from a callback ends the session without waiting; the destructor
// must not run in a callback. A callback that throws is reported to
// on_error and the client goes on.
// Set the handlers before connect().
//
// Errors are im::Error values: the server's status (with retry_after_ms for
// RATE_LIMITED and UNAVAILABLE), or one of the client's own:
//   UNAVAILABLE "connection lost"  the link went before the answer came
//     (the request may or may not have taken effect; sends are retried by
//     the outbox, never lost);
//   GONE "client closed"           close() was called; after the session
//     ended for good by itself, calls get its reason instead (UNAUTHENTICATED
//     "kicked out (...)" after a kickout, the refusal of a token refused twice);
//   EXPIRED                        a send left unanswered longer than
//     ChatOptions::outbox_max_age, given up (see there).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "im/client.h"
#include "im/result.h"
#include "proto/im.pb.h"

namespace im {

enum class ChatState : std::uint8_t { kIdle, kConnecting, kOnline, kOffline, kClosed };
std::string_view chat_state_name(ChatState s);

// Why the token provider is called.
enum class TokenReason : std::uint8_t { kLogin, kRefused, kExpired };

// A send not yet answered by the server.
struct PendingSend {
  std::string client_msg_id;
  v1::ConvType conv_type = v1::C2C;
  std::string to;
  std::uint32_t content_type = 0;
  std::string body;
  std::int64_t created_ms = 0;  // when the application asked (ms since the epoch)
};

// What a client keeps across restarts: the resync point and the outbox.
struct SavedState {
  std::uint64_t inbox_seq = 0;
  std::vector<PendingSend> outbox;
};

// Where a client keeps its SavedState, one per key (uid, device type and id).
// Called on the client's thread.
class ChatStorage {
 public:
  virtual ~ChatStorage() = default;
  virtual std::optional<SavedState> load(const std::string& key) = 0;
  virtual Result<Ok> save(const std::string& key, const SavedState& state) = 0;
};

// The default: lives as long as the object (share one to keep the state
// across ChatClients of one process).
class MemoryChatStorage : public ChatStorage {
 public:
  std::optional<SavedState> load(const std::string& key) override;
  Result<Ok> save(const std::string& key, const SavedState& state) override;

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, SavedState> states_;
};

// One file per key in a directory (made when missing): written to a
// temporary file, synced and renamed over the old one, so a crash leaves
// the old state or the new one, never half of one. One process per key.
// load() throws std::runtime_error for a file it cannot read (the client
// reports it and starts from the server's beginning).
class FileChatStorage : public ChatStorage {
 public:
  explicit FileChatStorage(std::string dir);
  std::optional<SavedState> load(const std::string& key) override;
  Result<Ok> save(const std::string& key, const SavedState& state) override;
  // The file of `key`: its name is the key hex-encoded, or its SHA-256 when
  // that would be too long for a file name.
  std::string path_of(const std::string& key) const;

 private:
  std::string dir_;
};

struct ChatOptions {
  // The server: a host name or IP address, and the port of the listener
  // that speaks `connection.transport` (server.listen for tcp and tls,
  // server.ws_listen for ws and wss).
  std::string host = "127.0.0.1";
  std::uint16_t port = 9700;
  ClientOptions connection;
  std::string uid;
  // Required. Called on the client's thread; may block (the client waits).
  // A provider that throws is reported to on_error and asked again at the
  // next attempt.
  std::function<std::string(TokenReason)> token;
  v1::DeviceType device_type = v1::DESKTOP;
  std::string device_id;
  std::string client_version = "imserver-cpp";
  // Asks the server to zstd-compress what it sends (PROTOCOL 1): worth it on
  // slow mobile links (a resync moves about a quarter of the bytes), a little
  // CPU on both ends otherwise. A server that does not compress just
  // answers without it. Over TLS it lets an eavesdropper who can also put
  // text into this user's inbox learn from frame lengths whether that text
  // resembles other messages of the same frame (docs/protocol.md).
  bool compression = false;
  // Default: a MemoryChatStorage of this client.
  std::shared_ptr<ChatStorage> storage;
  // Reconnect delays: a random delay up to min(backoff_max, backoff_base * 2^attempt).
  std::chrono::milliseconds backoff_base{500};
  std::chrono::milliseconds backoff_max{30000};
  // How long a request waits for its answer; past it the link is taken for dead.
  std::chrono::milliseconds request_timeout{15000};
  // How long an unanswered send stays in the outbox. Keep it below the
  // server's storage.dedupe_window_s (24 hours by default): a retry after
  // that window could be stored twice. Past it the send fails with EXPIRED.
  std::chrono::milliseconds outbox_max_age = std::chrono::hours(23);
  // The server's server.max_frame_bytes: a send whose frame would be larger
  // is refused at once with TOO_LARGE (the server would close the link on
  // it), and a frame from the server larger than this, once decompressed,
  // ends the link (ClientOptions::max_frame_bytes caps it further).
  std::uint32_t max_frame_bytes = 65536;
  // false: no resync after login (no PULL, so no ACK, and on_message only
  // gets PUSHes): for one-shot tools that only call (imcli send).
  bool resync = true;
};

struct SendOptions {
  v1::ConvType conv_type = v1::C2C;
  std::uint32_t content_type = 0;
  std::string client_msg_id;  // "" = a new random one
};

struct SendResult {
  std::uint64_t msg_id = 0;
  std::uint64_t conv_seq = 0;
  std::uint64_t inbox_seq = 0;
  std::int64_t server_time_ms = 0;
  bool duplicate = false;
};

struct KickInfo {
  v1::KickReason reason = v1::KICK_REASON_UNSPECIFIED;
  std::string by_device_id;
  std::string message;
  std::uint32_t reconnect_after_ms = 0;
  bool reconnects = false;  // whether the client comes back by itself
};

// A random client_msg_id (128 bits as 32 hex digits).
std::string new_client_msg_id();

// The delay before reconnect attempt `attempt` (0, 1, ...): full jitter,
// uniform in [0, min(max, base * 2^attempt)); `unit` in [0, 1).
std::chrono::milliseconds backoff_delay(unsigned attempt, std::chrono::milliseconds base,
                                        std::chrono::milliseconds max, double unit);

class ChatClient {
 public:
  template <class T>
  using Reply = std::future<Result<T>>;
  template <class T>
  using Callback = std::function<void(Result<T>)>;

  // Throws std::invalid_argument without a token provider.
  explicit ChatClient(ChatOptions options);
  // close()
  ~ChatClient();
  ChatClient(const ChatClient&) = delete;
  ChatClient& operator=(const ChatClient&) = delete;

  // ---- events (set before connect(); run on the client's thread)
  void on_message(std::function<void(const v1::Message&)> f);
  void on_state(std::function<void(ChatState)> f);
  void on_kicked(std::function<void(const KickInfo&)> f);
  void on_typing(std::function<void(const v1::TypingPush&)> f);
  void on_presence(std::function<void(const v1::PresencePush&)> f);
  void on_server_push(std::function<void(const v1::ServerPush&)> f);
  // Something failed in the background (a resync, a token, the storage).
  void on_error(std::function<void(const Error&)> f);

  // ---- the session
  // Loads the storage, connects and logs in; ready at the first successful
  // login. Later cuts reconnect by themselves. An error when the session
  // ends for good before (a token refused twice, a kickout, close()).
  Reply<Ok> connect();
  // LOGOUT (waits at most 2 s for it), then closes and stops the thread.
  // Unanswered sends stay in the storage for the next start. Idempotent.
  void close();
  ChatState state() const;
  // The highest inbox seq given to on_message.
  std::uint64_t inbox_seq() const;
  // Sends not yet answered.
  std::size_t outbox_size() const;

  // ---- messages
  // Ready once the message is stored (its SendResp); kept in the outbox
  // until then, across reconnects and restarts. Your own messages reach
  // on_message too, at their place in your inbox.
  Reply<SendResult> send(const std::string& to, std::string body, SendOptions options = {});
  void send_async(const std::string& to, std::string body, SendOptions options, Callback<SendResult> done);
  Reply<v1::HistoryResp> history(v1::ConvType type, const std::string& peer, std::uint64_t before_seq = 0,
                                 std::uint32_t limit = 50, std::uint64_t after_seq = 0);
  Reply<v1::SendResp> recall(v1::ConvType type, const std::string& peer, std::uint64_t conv_seq);
  Reply<v1::SendResp> edit(v1::ConvType type, const std::string& peer, std::uint64_t conv_seq, std::string body);
  Reply<v1::DeleteResp> delete_messages(const v1::DeleteReq& req);

  // ---- conversations (PROTOCOL 8)
  Reply<v1::ConvListResp> conversations(const std::string& cursor = "", std::uint32_t limit = 100);
  Reply<v1::ConvReadResp> mark_read(v1::ConvType type, const std::string& peer, std::uint64_t read_seq = 0,
                                    bool no_receipt = false);
  Reply<v1::ConvUpdateResp> update_conversation(const v1::ConvUpdateReq& req);
  Reply<v1::ReceiptsResp> receipts(const v1::ReceiptsReq& req);
  // Forwarded at most every few seconds by the server; no answer when it succeeds.
  void typing(v1::ConvType type, const std::string& peer, v1::TypingState state);
  Reply<v1::PresenceResp> presence(const std::vector<std::string>& uids);
  // The watch is kept by the client and sent again after each login (its
  // answer then goes to on_presence).
  Reply<v1::PresenceResp> watch_presence(const v1::PresenceWatchReq& req);
  // REPORT (c2s): OK once the report is durably queued for the business
  // backend's webhook; DISABLED when the server has none. An empty
  // report_id is filled with a random one. The receiver dedupes by
  // report_id: after a failure ("connection lost" too), send it again with
  // the same report_id.
  Reply<Ok> report(v1::ReportReq req);

  // ---- groups
  Reply<v1::GroupResp> create_group(const v1::GroupCreateReq& req);
  Reply<v1::GroupResp> get_group(const std::string& gid, bool with_members = false);
  Reply<v1::GroupListResp> list_groups();
  Reply<v1::GroupMembersResp> add_members(const std::string& gid, const std::vector<std::string>& uids);
  Reply<v1::GroupMembersResp> remove_members(const std::string& gid, const std::vector<std::string>& uids);
  Reply<v1::GroupResp> update_group(const v1::GroupUpdateReq& req);
  Reply<Ok> leave_group(const std::string& gid);
  Reply<Ok> dismiss_group(const std::string& gid);

  // ---- any request: waits for the login (never past close()); Resp is
  // the answer's message, or Ok for an empty answer.
  template <class Resp>
  Reply<Resp> call(Cmd cmd, const google::protobuf::MessageLite& req) {
    auto promise = std::make_shared<std::promise<Result<Resp>>>();
    auto future = promise->get_future();
    call_async<Resp>(cmd, req, [promise](Result<Resp> r) { promise->set_value(std::move(r)); });
    return future;
  }
  template <class Resp>
  void call_async(Cmd cmd, const google::protobuf::MessageLite& req, Callback<Resp> done) {
    call_frame(cmd, req.SerializeAsString(), [done = std::move(done)](Result<Frame> r) {
      if (!r) return done(r.error());
      if constexpr (std::is_same_v<Resp, Ok>) {
        done(Ok{});
      } else {
        Resp resp;
        if (!r->parse(resp)) return done(make_error(StatusCode::kInternal, "an answer that does not parse"));
        done(std::move(resp));
      }
    });
  }
  // The frame of the answer (status OK), or the error.
  void call_frame(Cmd cmd, std::string body, Callback<Frame> done);

 private:
  struct Impl;
  // A call whose answer put a row into this user's own inbox (read marks,
  // settings, deletes, recalls, edits: no PUSH comes to this session for
  // it): the row is fetched at once.
  template <class Resp>
  Reply<Resp> own_row_call(Cmd cmd, const google::protobuf::MessageLite& req);
  std::unique_ptr<Impl> impl_;
};

}  // namespace im
