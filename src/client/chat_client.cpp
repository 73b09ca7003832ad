#include "im/chat_client.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <random>
#include <sstream>

#include <fmt/format.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <asio/executor_work_guard.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "common/base64.h"

namespace im {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::uint32_t kPullLimit = 200;
constexpr milliseconds kGapWait{300};
constexpr milliseconds kAckDelay{100};
constexpr milliseconds kSaveDelay{50};
constexpr milliseconds kLogoutWait{2000};
// The backoff starts over only once a link has stayed up this long.
constexpr milliseconds kStableLink{10000};
// At most this long for one address when the host has more.
constexpr milliseconds kEndpointTimeout{5000};
// The longest delay taken from the server (retry_after_ms, reconnect_after_ms).
constexpr std::uint32_t kMaxServerDelayMs = 3'600'000;
constexpr int kMaxInternalRetries = 5;
constexpr const char* kLost = "connection lost";
constexpr const char* kClosed = "client closed";

Error lost_error() {
  return make_error(StatusCode::kUnavailable, kLost);
}
Error closed_error() {
  return make_error(StatusCode::kGone, kClosed);
}
bool is_lost(const Error& e) {
  return e.code == StatusCode::kUnavailable && e.message == kLost;
}
std::uint32_t server_delay(std::uint32_t ms) {
  return std::min(ms, kMaxServerDelayMs);
}
Error error_of(const Frame& f) {
  Error e{f.status(), f.error_message(), server_delay(f.retry_after_ms())};
  return e;
}

std::int64_t now_ms() {
  return std::chrono::duration_cast<milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A LOGIN answered with one of these is refused for good.
bool final_login_status(StatusCode c) {
  return c == StatusCode::kBadRequest || c == StatusCode::kForbidden || c == StatusCode::kUnsupportedVersion ||
         c == StatusCode::kUnknownCommand;
}
// A SEND answered with one of these is tried again; any other is final.
bool retry_send_status(StatusCode c) {
  return c == StatusCode::kRateLimited || c == StatusCode::kUnavailable || c == StatusCode::kInternal;
}

std::string hex(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char b : bytes) out += fmt::format("{:02x}", b);
  return out;
}

// The state file: a first line naming the format, then one line per field.
// Strings are base64 ("-" for an empty one), so any bytes fit on a line.
std::string field(std::string_view s) {
  return s.empty() ? "-" : base64_encode(s);
}
bool unfield(const std::string& in, std::string& out) {
  if (in == "-") {
    out.clear();
    return true;
  }
  return base64_decode(in, out);
}
constexpr const char* kStateMagic = "imclient-state 1";

std::string encode_state(const SavedState& s) {
  std::string out = fmt::format("{}\ninbox_seq {}\n", kStateMagic, s.inbox_seq);
  for (const auto& p : s.outbox)
    out += fmt::format("send {} {} {} {} {} {}\n", field(p.client_msg_id), static_cast<int>(p.conv_type), field(p.to),
                       p.content_type, p.created_ms, field(p.body));
  return out;
}

std::optional<SavedState> decode_state(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kStateMagic) return std::nullopt;
  SavedState s;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string kind;
    words >> kind;
    if (kind == "inbox_seq") {
      if (!(words >> s.inbox_seq)) return std::nullopt;
    } else if (kind == "send") {
      PendingSend p;
      std::string id, to, body;
      int type = 0;
      if (!(words >> id >> type >> to >> p.content_type >> p.created_ms >> body)) return std::nullopt;
      if (!unfield(id, p.client_msg_id) || !unfield(to, p.to) || !unfield(body, p.body) || !v1::ConvType_IsValid(type))
        return std::nullopt;
      p.conv_type = static_cast<v1::ConvType>(type);
      s.outbox.push_back(std::move(p));
    } else if (!kind.empty()) {
      return std::nullopt;
    }
  }
  return s;
}

}  // namespace

std::string_view chat_state_name(ChatState s) {
  switch (s) {
    case ChatState::kIdle:
      return "idle";
    case ChatState::kConnecting:
      return "connecting";
    case ChatState::kOnline:
      return "online";
    case ChatState::kOffline:
      return "offline";
    case ChatState::kClosed:
      return "closed";
  }
  return "unknown";
}

std::string new_client_msg_id() {
  std::array<unsigned char, 16> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    std::random_device rd;
    for (auto& b : raw) b = static_cast<unsigned char>(rd());
  }
  return hex(std::string_view(reinterpret_cast<const char*>(raw.data()), raw.size()));
}

milliseconds backoff_delay(unsigned attempt, milliseconds base, milliseconds max, double unit) {
  const double ceiling = std::min(static_cast<double>(max.count()),
                                  static_cast<double>(base.count()) * std::pow(2.0, std::min(attempt, 30u)));
  return milliseconds(static_cast<std::int64_t>(std::floor(std::clamp(unit, 0.0, 0.999999) * ceiling)));
}

// ---------------------------------------------------------------- storages

std::optional<SavedState> MemoryChatStorage::load(const std::string& key) {
  std::lock_guard lock(mutex_);
  auto it = states_.find(key);
  if (it == states_.end()) return std::nullopt;
  return it->second;
}

Result<Ok> MemoryChatStorage::save(const std::string& key, const SavedState& state) {
  std::lock_guard lock(mutex_);
  states_[key] = state;
  return Ok{};
}

FileChatStorage::FileChatStorage(std::string dir) : dir_(std::move(dir)) {}

std::string FileChatStorage::path_of(const std::string& key) const {
  std::string name = hex(key);
  if (name.size() > 200) {
    std::array<unsigned char, SHA256_DIGEST_LENGTH> digest{};
    SHA256(reinterpret_cast<const unsigned char*>(key.data()), key.size(), digest.data());
    name = "sha256-" + hex(std::string_view(reinterpret_cast<const char*>(digest.data()), digest.size()));
  }
  return (std::filesystem::path(dir_) / (name + ".state")).string();
}

std::optional<SavedState> FileChatStorage::load(const std::string& key) {
  const std::string path = path_of(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream text;
  text << in.rdbuf();
  auto state = decode_state(text.str());
  if (!state) throw std::runtime_error(fmt::format("{} is damaged: not a client state", path));
  return state;
}

Result<Ok> FileChatStorage::save(const std::string& key, const SavedState& state) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) return make_error(StatusCode::kInternal, fmt::format("cannot make {}: {}", dir_, ec.message()));
  const std::string path = path_of(key);
  const std::string tmp = path + ".tmp";
  const std::string text = encode_state(state);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return make_error(StatusCode::kInternal, fmt::format("cannot write {}: {}", tmp, std::strerror(errno)));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return make_error(StatusCode::kInternal, fmt::format("cannot write {}: {}", path, std::strerror(errno)));
  return Ok{};
}

// ---------------------------------------------------------------- the session

struct ChatClient::Impl {
  explicit Impl(ChatOptions o)
      : opt(std::move(o)),
        work(asio::make_work_guard(io)),
        resolver(io),
        endpoint_timer(io),
        reconnect_timer(io),
        heartbeat_timer(io),
        open_timer(io),
        gap_timer(io),
        ack_timer(io),
        save_timer(io),
        pull_retry_timer(io),
        send_retry_timer(io),
        stable_timer(io),
        rng(std::random_device{}()) {
    if (!opt.storage) opt.storage = std::make_shared<MemoryChatStorage>();
    key = fmt::format("{}|{}|{}", opt.uid, static_cast<int>(opt.device_type), opt.device_id);
    thread = std::thread([this] { run(); });
  }

  // ---- members; those declared after `io` are destroyed before it
  ChatOptions opt;
  std::string key;
  asio::io_context io;
  asio::executor_work_guard<asio::io_context::executor_type> work;
  std::thread thread;
  std::atomic<bool> stopped{false};  // the thread is gone: calls answer at once
  // Held while a call checks `stopped` and posts, and while close() sets it:
  // a call either reaches the queue before the thread stops or is answered
  // "closed" at once. close_mutex serializes close() itself.
  std::mutex lifecycle;
  std::mutex close_mutex;

  // Posts `f` unless the client has stopped; false when it has.
  template <class F>
  bool post_if_running(F&& f) {
    std::lock_guard lock(lifecycle);
    if (stopped) return false;
    asio::post(io, std::forward<F>(f));
    return true;
  }
  std::atomic<ChatState> state{ChatState::kIdle};
  std::atomic<std::uint64_t> held_seen{0};
  std::atomic<std::size_t> outbox_seen{0};

  std::function<void(const v1::Message&)> on_message;
  std::function<void(ChatState)> on_state;
  std::function<void(const KickInfo&)> on_kicked;
  std::function<void(const v1::TypingPush&)> on_typing;
  std::function<void(const v1::PresencePush&)> on_presence;
  std::function<void(const v1::ServerPush&)> on_server_push;
  std::function<void(const Error&)> on_error;

  // Everything below: the client's thread only.
  asio::ip::tcp::resolver resolver;
  std::vector<asio::ip::tcp::endpoint> endpoints;  // what opt.host resolved to
  asio::steady_timer endpoint_timer;               // one address's share of the open timeout
  asio::steady_timer reconnect_timer, heartbeat_timer, open_timer, gap_timer, ack_timer, save_timer,
      pull_retry_timer, send_retry_timer, stable_timer;
  bool reconnect_armed = false, gap_armed = false, ack_armed = false, save_armed = false;
  std::mt19937_64 rng;
  bool loaded = false;
  bool closing = false;  // close() under way: a lost link ends the client
  SavedState saved;
  std::shared_ptr<Client> link;
  std::uint64_t link_id = 0;  // bumped when a link ends: older callbacks see they are stale
  bool ready = false;         // connected (and upgraded); LOGIN may go
  std::optional<std::string> token;
  int token_refusals = 0;
  unsigned attempt = 0;
  std::uint32_t retry_after_ms = 0;
  milliseconds heartbeat{30000};
  Clock::time_point last_heard, last_beat;
  struct Outstanding {
    Callback<Frame> done;
    std::unique_ptr<asio::steady_timer> timer;
  };
  std::unordered_map<std::uint64_t, Outstanding> outstanding;
  std::uint64_t next_request = 0;
  std::vector<Callback<Ok>> login_waiters;
  std::vector<std::function<void(bool online)>> call_waiters;  // calls made before the login
  std::uint64_t held = 0, acked = 0;
  std::map<std::uint64_t, v1::Message> early;
  bool pulling = false, pull_again = false;
  bool flushing = false;
  int send_tries = 0;
  std::string in_flight;  // the client_msg_id of the SEND on the wire
  std::unordered_map<std::string, std::vector<Callback<SendResult>>> waiters;
  Error close_reason = closed_error();  // what calls after the end are answered
  std::set<std::string> watched;        // the presence watch, sent again after each login

  // ---- the thread
  void run() {
    for (;;) {
      try {
        io.run();
        return;
      } catch (const std::exception& e) {
        // An application callback threw: reported, and the client goes on.
        report(make_error(StatusCode::kInternal, fmt::format("a callback threw: {}", e.what())));
      }
    }
  }

  template <class F>
  void post(F&& f) {
    asio::post(io, std::forward<F>(f));
  }

  // Calls an application callback; one that throws is reported, and the
  // client goes on (its own state is never left half-changed).
  template <class F, class... A>
  void notify_app(const F& f, A&&... args) {
    if (!f) return;
    try {
      f(std::forward<A>(args)...);
    } catch (const std::exception& e) {
      if (on_error && &f != static_cast<const void*>(&on_error)) {
        try {
          on_error(make_error(StatusCode::kInternal, fmt::format("a callback threw: {}", e.what())));
        } catch (...) {
        }
      }
    } catch (...) {
    }
  }

  void report(const Error& e) {
    notify_app(on_error, e);
  }

  void set_state(ChatState s) {
    if (state.load() == s) return;
    state = s;
    notify_app(on_state, s);
  }

  // ---- storage
  void load() {
    if (loaded) return;
    loaded = true;
    try {
      if (auto s = opt.storage->load(key)) saved = std::move(*s);
    } catch (const std::exception& e) {
      report(make_error(StatusCode::kInternal, fmt::format("the storage could not be read: {}", e.what())));
    }
    for (auto& p : saved.outbox)
      if (p.created_ms == 0) p.created_ms = now_ms();
    held = saved.inbox_seq;
    held_seen = held;
    outbox_seen = saved.outbox.size();
  }

  void save_now() {
    save_armed = false;
    save_timer.cancel();
    saved.inbox_seq = held;
    auto r = opt.storage->save(key, saved);
    if (!r) report(r.error());
  }

  void save_soon() {
    if (save_armed) return;
    save_armed = true;
    save_timer.expires_after(kSaveDelay);
    save_timer.async_wait([this](const asio::error_code& ec) {
      if (!ec && save_armed) save_now();
    });
  }

  // ---- requests
  void request(Cmd cmd, std::string body, Callback<Frame> done, milliseconds timeout) {
    if (!link || !ready) return done(lost_error());
    const std::uint64_t id = ++next_request;
    const std::uint64_t lid = link_id;
    auto& o = outstanding[id];
    o.done = std::move(done);
    o.timer = std::make_unique<asio::steady_timer>(io, timeout);
    o.timer->async_wait([this, id, lid](const asio::error_code& ec) {
      if (ec) return;
      auto it = outstanding.find(id);
      if (it == outstanding.end()) return;
      auto d = std::move(it->second.done);
      outstanding.erase(it);
      d(lost_error());
      // A link that stopped answering is dead: start over (this one only).
      if (lid == link_id) drop_link();
    });
    const std::uint32_t seq = link->request(cmd, body, [this, id](Frame& f) {
      heard();
      auto it = outstanding.find(id);
      if (it == outstanding.end()) return;
      auto d = std::move(it->second.done);
      it->second.timer->cancel();
      outstanding.erase(it);
      if (!f.ok()) return d(error_of(f));
      d(std::move(f));
    });
    if (seq == 0) {
      auto it = outstanding.find(id);
      if (it == outstanding.end()) return;
      auto d = std::move(it->second.done);
      it->second.timer->cancel();
      outstanding.erase(it);
      d(lost_error());
    }
  }

  void fail_outstanding(const Error& e) {
    auto all = std::move(outstanding);
    outstanding.clear();
    for (auto& [id, o] : all) {
      o.timer->cancel();
      o.done(e);
    }
  }

  // A call of the application: now when online, after the login otherwise.
  void call(Cmd cmd, std::string body, Callback<Frame> done) {
    if (state == ChatState::kClosed) return done(close_reason);
    if (state == ChatState::kOnline) return request(cmd, std::move(body), std::move(done), opt.request_timeout);
    call_waiters.push_back([this, cmd, body = std::move(body), done = std::move(done)](bool online) mutable {
      if (!online) return done(close_reason);
      request(cmd, std::move(body), std::move(done), opt.request_timeout);
    });
    start();
  }

  void start() {
    load();
    if (state == ChatState::kIdle) open();
  }

  // ---- the link
  void open() {
    if (link || state == ChatState::kClosed) return;
    reconnect_timer.cancel();
    reconnect_armed = false;
    set_state(ChatState::kConnecting);
    link = new_link();
    ready = false;
    const std::uint64_t lid = link_id;
    // A connection that does not open in time (a network that drops packets) is given up.
    open_timer.expires_after(opt.request_timeout);
    open_timer.async_wait([this, lid](const asio::error_code& ec) {
      if (!ec && lid == link_id && !ready) drop_link();
    });
    // RFC 6761, 6.3: "localhost" is the loopback, whatever the resolver
    // says (a minimal system may have no /etc/hosts at all).
    if (is_localhost(opt.host)) {
      endpoints = {{asio::ip::address_v4::loopback(), opt.port}, {asio::ip::address_v6::loopback(), opt.port}};
      return connect_to(0, lid);
    }
    resolver.async_resolve(opt.host, std::to_string(opt.port),
                           [this, lid](const asio::error_code& ec, asio::ip::tcp::resolver::results_type results) {
                             if (lid != link_id) return;
                             if (ec || results.empty()) {
                               report(make_error(StatusCode::kUnavailable,
                                                 fmt::format("cannot resolve {}: {}", opt.host, ec.message())));
                               return drop_link();
                             }
                             endpoints.clear();
                             for (const auto& r : results) endpoints.push_back(r.endpoint());
                             connect_to(0, lid);
                           });
  }

  void next_endpoint(std::size_t i, std::uint64_t lid) {
    auto given_up = std::exchange(link, new_link());
    given_up->close();
    connect_to(i + 1, lid);
  }

  static bool is_localhost(std::string_view host) {
    std::string h(host);
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char ch) { return std::tolower(ch); });
    if (!h.empty() && h.back() == '.') h.pop_back();
    return h == "localhost" || (h.size() > 10 && h.ends_with(".localhost"));
  }

  std::shared_ptr<Client> new_link() {
    ClientOptions connection = opt.connection;
    // TLS checks the certificate against the name dialled (and sends it as SNI).
    if (connection.server_name.empty()) connection.server_name = opt.host;
    // The server sends nothing larger, decompressed bodies included: a
    // small compressed frame that would inflate beyond it ends the link.
    connection.max_frame_bytes = std::min(connection.max_frame_bytes, opt.max_frame_bytes);
    return Client::create(io, connection);
  }

  // Tries endpoints[i], then the next one the name resolved to when the
  // connection fails or does not open within its share of the time (a name
  // whose IPv6 address is filtered, a server listening on 127.0.0.1 only
  // while the name gives ::1 first).
  void connect_to(std::size_t i, std::uint64_t lid) {
    auto c = link;
    // Handlers of a link given up for the next address find another in `link`.
    // They hold a plain pointer: the link owns them, so a shared one would
    // keep it alive for ever (and it cannot run them once it is gone).
    const Client* self = c.get();
    c->on_frame([this, lid, self](Frame& f) {
      if (lid == link_id && link.get() == self) on_frame(f);
    });
    c->on_close([this, lid, self](const asio::error_code&) {
      if (lid == link_id && link.get() == self) link_lost();
    });
    if (i + 1 < endpoints.size()) {
      const auto share =
          std::clamp(opt.request_timeout / static_cast<int>(endpoints.size()), milliseconds(1000), kEndpointTimeout);
      endpoint_timer.expires_after(share);
      endpoint_timer.async_wait([this, lid, c, i](const asio::error_code& ec) {
        if (ec || lid != link_id || link != c || ready) return;
        next_endpoint(i, lid);
      });
    }
    c->connect(endpoints[i], [this, lid, c, i](const asio::error_code& ec) {
      if (lid != link_id || link != c) return;
      endpoint_timer.cancel();
      if (ec) {
        // An admission refusal over WebSocket is an HTTP 503 before the
        // upgrade; a 403 (Origin) or 404 (path) will not change by retrying.
        const int http = c->ws_http_status();
        if (http == 400 || http == 401 || http == 403 || http == 404 || http == 426)
          return shut_down(make_error(StatusCode::kUnavailable, fmt::format("HTTP {} on the upgrade", http)));
        // A TLS failure (a certificate that does not verify) came from a
        // server that answered: the next address would say the same.
        const bool tls_failed = ec.category() == asio::error::get_ssl_category() ||
                                ec.category() == asio::ssl::error::get_stream_category();
        if (http == 0 && !tls_failed && i + 1 < endpoints.size()) return next_endpoint(i, lid);
        Error e = make_error(StatusCode::kUnavailable, http != 0 ? fmt::format("HTTP {} on the upgrade", http)
                                                                 : "cannot connect: " + ec.message());
        if (http == 503) {
          e.retry_after_ms = server_delay(c->ws_retry_after_ms());
          retry_after_ms = std::max(retry_after_ms, e.retry_after_ms);
        }
        report(e);
        return link_lost();
      }
      ready = true;
      open_timer.cancel();
      login();
    });
  }

  // Closes the current link; the reconnect follows.
  void drop_link() {
    if (!link) return;
    auto c = std::move(link);
    ++link_id;
    c->close();
    end_link();
  }

  void link_lost() {
    ++link_id;
    link.reset();
    end_link();
  }

  void end_link() {
    ready = false;
    open_timer.cancel();
    endpoint_timer.cancel();
    heartbeat_timer.cancel();
    stable_timer.cancel();
    pull_retry_timer.cancel();
    send_retry_timer.cancel();
    in_flight.clear();
    fail_outstanding(lost_error());
    flushing = false;
    if (state == ChatState::kClosed) return;
    if (closing) return shut_down(closed_error());
    set_state(ChatState::kOffline);
    schedule_reconnect();
  }

  void schedule_reconnect() {
    if (reconnect_armed || state == ChatState::kClosed) return;
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const milliseconds delay = std::max(backoff_delay(attempt++, opt.backoff_base, opt.backoff_max, unit(rng)),
                                        milliseconds(retry_after_ms));
    retry_after_ms = 0;
    reconnect_armed = true;
    reconnect_timer.expires_after(delay);
    reconnect_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      reconnect_armed = false;
      if (state == ChatState::kOffline) open();
    });
  }

  void shut_down(const Error& reason) {
    if (state == ChatState::kClosed) return;
    close_reason = reason;
    if (reason.message != kClosed) report(reason);  // why, before "closed"
    for (auto* t : {&reconnect_timer, &heartbeat_timer, &open_timer, &endpoint_timer, &gap_timer, &ack_timer,
                    &pull_retry_timer, &send_retry_timer, &stable_timer})
      t->cancel();
    reconnect_armed = gap_armed = ack_armed = false;
    resolver.cancel();
    if (link) {
      auto c = std::move(link);
      ++link_id;
      c->close();
    }
    ready = false;
    set_state(ChatState::kClosed);
    fail_outstanding(closed_error());
    for (auto& w : std::exchange(login_waiters, {})) w(reason);
    for (auto& w : std::exchange(call_waiters, {})) w(false);
    for (auto& [id, list] : std::exchange(waiters, {}))
      for (auto& w : list) w(reason);
    if (loaded) save_now();
  }

  // ---- login
  std::optional<std::string> ask_token(TokenReason why) {
    try {
      return opt.token(why);
    } catch (const std::exception& e) {
      // Its backend down? Asked again at the next attempt.
      report(make_error(StatusCode::kUnavailable, fmt::format("the token provider failed: {}", e.what())));
      return std::nullopt;
    }
  }

  void login() {
    if (!token) token = ask_token(TokenReason::kLogin);
    if (!token) return drop_link();
    v1::LoginReq req;
    req.set_uid(opt.uid);
    req.set_token(*token);
    req.set_device_type(opt.device_type);
    req.set_device_id(opt.device_id);
    req.set_client_version(opt.client_version);
    if (opt.compression) req.set_compression("zstd");
    const std::uint64_t lid = link_id;
    request(Cmd::kLogin, req.SerializeAsString(), [this, lid](Result<Frame> r) {
      if (lid != link_id) return;
      if (!r) return login_refused(r.error());
      v1::LoginResp resp;
      if (!r->parse(resp)) {
        report(make_error(StatusCode::kInternal, "a LoginResp that does not parse"));
        return drop_link();
      }
      logged_in(resp);
    }, opt.request_timeout);
  }

  void login_refused(const Error& e) {
    if (is_lost(e)) return;
    if (e.code == StatusCode::kUnauthenticated) {
      // A new token, once; refused again, the client closes.
      token.reset();
      if (++token_refusals > 1) return shut_down(e);
      token = ask_token(TokenReason::kRefused);
      return drop_link();
    }
    if (final_login_status(e.code)) return shut_down(e);
    retry_after_ms = std::max(retry_after_ms, e.retry_after_ms);
    report(e);
    drop_link();
  }

  void logged_in(const v1::LoginResp& resp) {
    token_refusals = 0;
    retry_after_ms = 0;
    stable_timer.expires_after(kStableLink);
    stable_timer.async_wait([this](const asio::error_code& ec) {
      if (!ec) attempt = 0;
    });
    // The server's inbox ends below what this client holds (a restored
    // backup, a new data dir): what it numbers from there on is new.
    if (resp.inbox_max_seq() < held) {
      report(make_error(StatusCode::kConflict, fmt::format("the server's inbox ends at {}, below the {} held",
                                                           resp.inbox_max_seq(), held)));
      held = resp.inbox_max_seq();
      held_seen = held;
      acked = 0;
      early.clear();
      save_now();
    }
    heartbeat = milliseconds(std::clamp<std::uint32_t>(resp.heartbeat_interval_s(), 1, 3600) * 1000);
    start_heartbeat();
    set_state(ChatState::kOnline);
    for (auto& w : std::exchange(login_waiters, {})) w(Ok{});
    for (auto& w : std::exchange(call_waiters, {})) w(true);
    if (opt.resync) resync();
    flush();
    rewatch();
  }

  // The presence watch lives as long as the session on the server: sent
  // again after each login, its answer given to on_presence.
  void rewatch() {
    if (watched.empty()) return;
    v1::PresenceWatchReq req;
    for (const auto& uid : watched) {
      if (req.add_size() == 500) break;  // PROTOCOL 8.5: at most 500 a request
      req.add_add(uid);
    }
    request(Cmd::kPresenceWatch, req.SerializeAsString(), [this](Result<Frame> r) {
      v1::PresenceResp resp;
      if (!r || !r->parse(resp)) return;
      v1::PresencePush push;
      *push.mutable_presences() = resp.presences();
      notify_app(on_presence, push);
    }, opt.request_timeout);
  }

  // ---- heartbeats: one every interval, checked four times an interval
  void heard() {
    last_heard = Clock::now();
  }

  void start_heartbeat() {
    last_heard = last_beat = Clock::now();
    arm_heartbeat();
  }

  void arm_heartbeat() {
    heartbeat_timer.expires_after(std::max(milliseconds(250), heartbeat / 4));
    const std::uint64_t lid = link_id;
    heartbeat_timer.async_wait([this, lid](const asio::error_code& ec) {
      if (ec || lid != link_id || state != ChatState::kOnline) return;
      const auto now = Clock::now();
      if (now - last_heard > 2 * heartbeat) return drop_link();  // two silent intervals: dead
      if (now - last_beat >= heartbeat) {
        last_beat = now;
        request(Cmd::kHeartbeat, {}, [](Result<Frame>) {}, 2 * heartbeat);
      }
      arm_heartbeat();
    });
  }

  // ---- frames the server starts
  void on_frame(Frame& f) {
    heard();
    if (f.header.is_response()) return;  // an answer to nothing pending (a TYPING refusal)
    switch (f.header.cmd) {
      case Cmd::kPush: {
        v1::MessagePush push;
        if (!f.parse(push)) return bad_frame(f);
        std::vector<v1::Message> rows;
        for (auto& m : *push.mutable_messages()) {
          // A large group's message has no inbox seq (PROTOCOL 9): given as pushed.
          if (m.inbox_seq() == 0) {
            notify_app(on_message, m);
          } else {
            rows.push_back(std::move(m));
          }
        }
        return offer(std::move(rows));
      }
      case Cmd::kKickout: {
        v1::Kickout k;
        if (!f.parse(k)) return bad_frame(f);
        return kicked(k);
      }
      case Cmd::kError: {
        const Error e = error_of(f);
        retry_after_ms = std::max(retry_after_ms, e.retry_after_ms);
        // The send on the wire broke the framing: sent again, it would break
        // the next link too.
        if (!in_flight.empty() && (e.code == StatusCode::kFrameTooLarge || e.code == StatusCode::kBadFrame))
          finish_send(std::exchange(in_flight, {}), e);
        return report(e);
      }
      case Cmd::kTypingPush: {
        v1::TypingPush t;
        if (!f.parse(t)) return bad_frame(f);
        notify_app(on_typing, t);
        return;
      }
      case Cmd::kPresencePush: {
        v1::PresencePush p;
        if (!f.parse(p)) return bad_frame(f);
        notify_app(on_presence, p);
        return;
      }
      case Cmd::kServerPush: {
        v1::ServerPush p;
        if (!f.parse(p)) return bad_frame(f);
        notify_app(on_server_push, p);
        return;
      }
      default:
        return;
    }
  }

  // A body that does not decode: the link is replaced, and the resync after
  // the next login fetches what it held.
  void bad_frame(const Frame& f) {
    report(make_error(StatusCode::kBadFrame, fmt::format("a {} frame that does not decode", cmd_name(f.header.cmd))));
    drop_link();
  }

  void kicked(const v1::Kickout& k) {
    KickInfo info{k.reason(), k.by_device_id(), k.message(), k.reconnect_after_ms(),
                  k.reason() == v1::SERVER_SHUTDOWN || k.reason() == v1::TOKEN_EXPIRED};
    notify_app(on_kicked, info);
    if (!info.reconnects)
      return shut_down(make_error(StatusCode::kUnauthenticated,
                                  fmt::format("kicked out ({})", k.message().empty() ? v1::KickReason_Name(k.reason())
                                                                                      : k.message())));
    if (k.reason() == v1::TOKEN_EXPIRED) {
      token.reset();
      token = ask_token(TokenReason::kExpired);
    }
    // reconnect_after_ms counts from the kickout's receipt.
    retry_after_ms = std::max(retry_after_ms, server_delay(k.reconnect_after_ms()));
    drop_link();
  }

  // ---- the inbox: each seq given once, in order; a gap filled by PULL
  void offer(std::vector<v1::Message> rows) {
    for (auto& m : rows)
      if (m.inbox_seq() > held) early.try_emplace(m.inbox_seq(), std::move(m));
    early.erase(early.begin(), early.upper_bound(held));
    bool delivered = false;
    for (auto it = early.find(held + 1); it != early.end(); it = early.find(held + 1)) {
      v1::Message m = std::move(it->second);
      early.erase(it);
      held += 1;
      held_seen = held;
      delivered = true;
      notify_app(on_message, m);
    }
    if (delivered) {
      save_soon();
      schedule_ack();
    }
    if (!early.empty() && !gap_armed) {
      // The row below may still be on its way (a SendResp and a PUSH cross).
      gap_armed = true;
      gap_timer.expires_after(kGapWait);
      gap_timer.async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        gap_armed = false;
        if (!early.empty()) resync();
      });
    }
  }

  void schedule_ack() {
    if (ack_armed) return;
    ack_armed = true;
    ack_timer.expires_after(kAckDelay);
    ack_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) return;
      ack_armed = false;
      if (!link || state != ChatState::kOnline || held <= acked) return;
      v1::AckReq req;
      req.set_inbox_seq(held);
      link->notify(Cmd::kAck, &req);
      acked = held;
    });
  }

  void resync() {
    if (pulling) {
      pull_again = true;
      return;
    }
    pulling = true;
    pull_again = false;
    pull_page();
  }

  void pull_page() {
    if (state != ChatState::kOnline) {
      pulling = false;
      return;
    }
    v1::PullReq req;
    req.set_after_seq(held);
    req.set_limit(kPullLimit);
    const std::uint64_t before = held;
    request(Cmd::kPull, req.SerializeAsString(), [this, before](Result<Frame> r) {
      if (!r) {
        pulling = false;
        if (is_lost(r.error()) || r.error().code == StatusCode::kGone) return;
        report(r.error());
        // RATE_LIMITED, UNAVAILABLE, INTERNAL: tried again.
        pull_retry_timer.expires_after(milliseconds(r.error().retry_after_ms > 0 ? r.error().retry_after_ms : 1000));
        pull_retry_timer.async_wait([this](const asio::error_code& ec) {
          if (!ec && state == ChatState::kOnline) {
            resync();
            flush();
          }
        });
        return;
      }
      v1::PullResp resp;
      if (!r->parse(resp)) {
        pulling = false;
        return bad_frame(*r);
      }
      // Rows below the oldest kept are gone for good: resume above them.
      if (resp.oldest_seq() > held + 1) held = resp.oldest_seq() - 1;
      std::vector<v1::Message> rows(resp.messages().begin(), resp.messages().end());
      offer(std::move(rows));
      if ((resp.has_more() && held != before) || std::exchange(pull_again, false)) return pull_page();
      pulling = false;
    }, opt.request_timeout);
  }

  // ---- the outbox: in order, one at a time
  void send(const std::string& to, std::string body, SendOptions o, Callback<SendResult> done) {
    if (state == ChatState::kClosed) return done(close_reason);
    load();
    PendingSend p{o.client_msg_id.empty() ? new_client_msg_id() : o.client_msg_id, o.conv_type, to, o.content_type,
                  std::move(body), now_ms()};
    v1::SendReq req = send_req(p);
    const std::size_t frame = kHeaderSize + req.ByteSizeLong();
    if (frame > opt.max_frame_bytes)
      return done(make_error(StatusCode::kTooLarge, fmt::format("a {}-byte frame is over the server's {} bytes", frame,
                                                                opt.max_frame_bytes)));
    waiters[p.client_msg_id].push_back(std::move(done));
    const bool queued = std::any_of(saved.outbox.begin(), saved.outbox.end(),
                                    [&](const PendingSend& q) { return q.client_msg_id == p.client_msg_id; });
    if (!queued) {
      saved.outbox.push_back(std::move(p));
      outbox_seen = saved.outbox.size();
      save_now();  // durable before it is first sent
    }
    if (state == ChatState::kIdle) open();
    flush();
  }

  static v1::SendReq send_req(const PendingSend& p) {
    v1::SendReq req;
    req.set_client_msg_id(p.client_msg_id);
    req.set_conv_type(p.conv_type);
    req.set_to(p.to);
    req.set_content_type(p.content_type);
    req.set_body(p.body);
    return req;
  }

  void flush() {
    if (flushing || state != ChatState::kOnline || saved.outbox.empty()) return;
    flushing = true;
    send_head();
  }

  void send_head() {
    if (state != ChatState::kOnline || saved.outbox.empty()) {
      flushing = false;
      return;
    }
    const PendingSend& p = saved.outbox.front();
    const std::int64_t age = now_ms() - p.created_ms;
    if (age > opt.outbox_max_age.count()) {
      finish_send(p.client_msg_id,
                  make_error(StatusCode::kExpired, fmt::format("unanswered for {} s: given up (it may have been stored)",
                                                               age / 1000)));
      return post([this] { send_head(); });
    }
    const std::string id = p.client_msg_id;
    in_flight = id;
    request(Cmd::kSend, send_req(p).SerializeAsString(), [this, id](Result<Frame> r) {
      in_flight.clear();
      if (!r) return send_failed(id, r.error());
      send_tries = 0;
      v1::SendResp resp;
      if (!r->parse(resp)) {
        flushing = false;
        return bad_frame(*r);
      }
      sent(id, resp);
      post([this] { send_head(); });
    }, opt.request_timeout);
  }

  void send_failed(const std::string& id, const Error& e) {
    if (is_lost(e) || e.code == StatusCode::kGone) {
      flushing = false;  // sent again after the next login
      return;
    }
    if (!retry_send_status(e.code) || (e.code == StatusCode::kInternal && ++send_tries > kMaxInternalRetries)) {
      send_tries = 0;
      finish_send(id, e);
      return post([this] { send_head(); });
    }
    std::uniform_real_distribution<double> unit(0.0, 1.0);
    const auto wait = std::max(milliseconds(e.retry_after_ms),
                               backoff_delay(std::min(send_tries, 10), opt.backoff_base, opt.backoff_max, unit(rng)));
    send_retry_timer.expires_after(wait);
    send_retry_timer.async_wait([this](const asio::error_code& ec) {
      if (ec) {
        flushing = false;
        return;
      }
      send_head();
    });
  }

  void sent(const std::string& id, const v1::SendResp& resp) {
    auto it = std::find_if(saved.outbox.begin(), saved.outbox.end(),
                           [&](const PendingSend& q) { return q.client_msg_id == id; });
    if (it == saved.outbox.end()) return;
    SendResult result{resp.msg_id(), resp.conv_seq(), resp.inbox_seq(), resp.server_time_ms(), resp.duplicate()};
    if (resp.duplicate()) {
      // The stored original may differ from this retry: its row is fetched, never made up.
      if (resp.inbox_seq() > held) resync();
    } else if (resp.inbox_seq() > 0) {
      // The sending session gets no PUSH of its own message: the answer gives its place.
      v1::Message m;
      m.set_msg_id(resp.msg_id());
      m.set_conv_type(it->conv_type);
      m.set_from(opt.uid);
      m.set_to(it->to);
      m.set_conv_seq(resp.conv_seq());
      m.set_inbox_seq(resp.inbox_seq());
      m.set_client_msg_id(it->client_msg_id);
      m.set_content_type(it->content_type);
      m.set_body(it->body);
      m.set_server_time_ms(resp.server_time_ms());
      std::vector<v1::Message> rows;
      rows.push_back(std::move(m));
      offer(std::move(rows));
    }
    finish_send(id, result);
  }

  void finish_send(const std::string& id, Result<SendResult> r) {
    std::erase_if(saved.outbox, [&](const PendingSend& q) { return q.client_msg_id == id; });
    outbox_seen = saved.outbox.size();
    save_now();
    auto it = waiters.find(id);
    if (it == waiters.end()) {
      // A send of an earlier run has no caller to tell.
      if (!r) report(r.error());
      return;
    }
    auto list = std::move(it->second);
    waiters.erase(it);
    for (auto& w : list) w(r);
  }

  // ---- close
  void begin_close(std::function<void()> done) {
    if (state == ChatState::kClosed) return done();
    closing = true;
    if (state != ChatState::kOnline || !link) {
      shut_down(closed_error());
      return done();
    }
    request(Cmd::kLogout, {}, [this, done](Result<Frame>) {
      shut_down(closed_error());
      done();
    }, kLogoutWait);
  }
};

// ---------------------------------------------------------------- the facade

ChatClient::ChatClient(ChatOptions options) {
  if (!options.token) throw std::invalid_argument("ChatOptions::token (the token provider) is required");
  impl_ = std::make_unique<Impl>(std::move(options));
}

ChatClient::~ChatClient() {
  close();
}

void ChatClient::on_message(std::function<void(const v1::Message&)> f) {
  impl_->on_message = std::move(f);
}
void ChatClient::on_state(std::function<void(ChatState)> f) {
  impl_->on_state = std::move(f);
}
void ChatClient::on_kicked(std::function<void(const KickInfo&)> f) {
  impl_->on_kicked = std::move(f);
}
void ChatClient::on_typing(std::function<void(const v1::TypingPush&)> f) {
  impl_->on_typing = std::move(f);
}
void ChatClient::on_presence(std::function<void(const v1::PresencePush&)> f) {
  impl_->on_presence = std::move(f);
}
void ChatClient::on_server_push(std::function<void(const v1::ServerPush&)> f) {
  impl_->on_server_push = std::move(f);
}
void ChatClient::on_error(std::function<void(const Error&)> f) {
  impl_->on_error = std::move(f);
}

ChatState ChatClient::state() const {
  return impl_->state.load();
}
std::uint64_t ChatClient::inbox_seq() const {
  return impl_->held_seen.load();
}
std::size_t ChatClient::outbox_size() const {
  return impl_->outbox_seen.load();
}

ChatClient::Reply<Ok> ChatClient::connect() {
  auto promise = std::make_shared<std::promise<Result<Ok>>>();
  auto future = promise->get_future();
  Impl& s = *impl_;
  const bool posted = s.post_if_running([&s, promise] {
    if (s.state == ChatState::kClosed) return promise->set_value(closed_error());
    if (s.state == ChatState::kOnline) return promise->set_value(Ok{});
    s.login_waiters.push_back([promise](Result<Ok> r) { promise->set_value(std::move(r)); });
    s.start();
  });
  if (!posted) promise->set_value(closed_error());
  return future;
}

void ChatClient::close() {
  if (!impl_) return;
  Impl& s = *impl_;
  if (std::this_thread::get_id() == s.thread.get_id()) {
    // From a callback: the session ends; the thread stops with the destructor.
    s.begin_close([] {});
    return;
  }
  std::lock_guard closing(s.close_mutex);
  if (s.stopped) return;
  auto done = std::make_shared<std::promise<void>>();
  auto finished = done->get_future();
  if (s.post_if_running([&s, done] { s.begin_close([done] { done->set_value(); }); }))
    finished.wait_for(kLogoutWait + milliseconds(1000));
  {
    std::lock_guard lock(s.lifecycle);
    s.stopped = true;
  }
  s.work.reset();
  s.io.stop();
  if (s.thread.joinable()) s.thread.join();
  // What was posted meanwhile runs here and finds the client closed.
  s.post([&s] { s.shut_down(closed_error()); });
  s.io.restart();
  s.io.poll();
}

void ChatClient::call_frame(Cmd cmd, std::string body, Callback<Frame> done) {
  Impl& s = *impl_;
  auto shared = std::make_shared<Callback<Frame>>(std::move(done));
  if (!s.post_if_running([&s, cmd, body = std::move(body), shared]() mutable {
        s.call(cmd, std::move(body), std::move(*shared));
      }))
    (*shared)(closed_error());
}

void ChatClient::send_async(const std::string& to, std::string body, SendOptions options, Callback<SendResult> done) {
  Impl& s = *impl_;
  auto shared = std::make_shared<Callback<SendResult>>(std::move(done));
  if (!s.post_if_running([&s, to, body = std::move(body), options = std::move(options), shared]() mutable {
        s.send(to, std::move(body), std::move(options), std::move(*shared));
      }))
    (*shared)(closed_error());
}

ChatClient::Reply<SendResult> ChatClient::send(const std::string& to, std::string body, SendOptions options) {
  auto promise = std::make_shared<std::promise<Result<SendResult>>>();
  auto future = promise->get_future();
  send_async(to, std::move(body), std::move(options),
             [promise](Result<SendResult> r) { promise->set_value(std::move(r)); });
  return future;
}

template <class Resp>
ChatClient::Reply<Resp> ChatClient::own_row_call(Cmd cmd, const google::protobuf::MessageLite& req) {
  auto promise = std::make_shared<std::promise<Result<Resp>>>();
  auto future = promise->get_future();
  Impl* s = impl_.get();
  // The answer runs on the client's thread: its state may be read there.
  call_async<Resp>(cmd, req, [s, promise](Result<Resp> r) {
    if (r && r->inbox_seq() > s->held && s->state == ChatState::kOnline && s->opt.resync) s->resync();
    promise->set_value(std::move(r));
  });
  return future;
}

ChatClient::Reply<v1::HistoryResp> ChatClient::history(v1::ConvType type, const std::string& peer,
                                                       std::uint64_t before_seq, std::uint32_t limit,
                                                       std::uint64_t after_seq) {
  v1::HistoryReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_before_seq(before_seq);
  req.set_after_seq(after_seq);
  req.set_limit(limit);
  return call<v1::HistoryResp>(Cmd::kHistory, req);
}

ChatClient::Reply<v1::SendResp> ChatClient::recall(v1::ConvType type, const std::string& peer,
                                                   std::uint64_t conv_seq) {
  v1::RecallReq req;
  req.set_client_msg_id(new_client_msg_id());
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_conv_seq(conv_seq);
  return own_row_call<v1::SendResp>(Cmd::kRecall, req);
}

ChatClient::Reply<v1::SendResp> ChatClient::edit(v1::ConvType type, const std::string& peer, std::uint64_t conv_seq,
                                                 std::string body) {
  v1::EditReq req;
  req.set_client_msg_id(new_client_msg_id());
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_conv_seq(conv_seq);
  req.set_body(std::move(body));
  return own_row_call<v1::SendResp>(Cmd::kEdit, req);
}

ChatClient::Reply<v1::DeleteResp> ChatClient::delete_messages(const v1::DeleteReq& req) {
  return own_row_call<v1::DeleteResp>(Cmd::kDelete, req);
}

ChatClient::Reply<v1::ConvListResp> ChatClient::conversations(const std::string& cursor, std::uint32_t limit) {
  v1::ConvListReq req;
  req.set_cursor(cursor);
  req.set_limit(limit);
  return call<v1::ConvListResp>(Cmd::kConvList, req);
}

ChatClient::Reply<v1::ConvReadResp> ChatClient::mark_read(v1::ConvType type, const std::string& peer,
                                                          std::uint64_t read_seq, bool no_receipt) {
  v1::ConvReadReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_read_seq(read_seq);
  req.set_no_receipt(no_receipt);
  return own_row_call<v1::ConvReadResp>(Cmd::kConvRead, req);
}

ChatClient::Reply<v1::ConvUpdateResp> ChatClient::update_conversation(const v1::ConvUpdateReq& req) {
  return own_row_call<v1::ConvUpdateResp>(Cmd::kConvUpdate, req);
}

ChatClient::Reply<v1::ReceiptsResp> ChatClient::receipts(const v1::ReceiptsReq& req) {
  return call<v1::ReceiptsResp>(Cmd::kReceipts, req);
}

void ChatClient::typing(v1::ConvType type, const std::string& peer, v1::TypingState state) {
  Impl& s = *impl_;
  v1::TypingReq req;
  req.set_conv_type(type);
  req.set_peer(peer);
  req.set_state(state);
  s.post_if_running([&s, req = std::move(req)] {
    if (s.link && s.state == ChatState::kOnline) s.link->notify(Cmd::kTyping, &req);
  });
}

ChatClient::Reply<v1::PresenceResp> ChatClient::presence(const std::vector<std::string>& uids) {
  v1::PresenceReq req;
  for (const auto& u : uids) req.add_uids(u);
  return call<v1::PresenceResp>(Cmd::kPresence, req);
}

ChatClient::Reply<v1::PresenceResp> ChatClient::watch_presence(const v1::PresenceWatchReq& req) {
  auto promise = std::make_shared<std::promise<Result<v1::PresenceResp>>>();
  auto future = promise->get_future();
  Impl* s = impl_.get();
  // Kept (on the client's thread, once the server took it) to be sent again after a reconnect.
  call_async<v1::PresenceResp>(Cmd::kPresenceWatch, req, [s, req, promise](Result<v1::PresenceResp> r) {
    if (r) {
      if (req.clear()) s->watched.clear();
      for (const auto& u : req.remove()) s->watched.erase(u);
      for (const auto& u : req.add()) s->watched.insert(u);
    }
    promise->set_value(std::move(r));
  });
  return future;
}

ChatClient::Reply<v1::GroupResp> ChatClient::create_group(const v1::GroupCreateReq& req) {
  return call<v1::GroupResp>(Cmd::kGroupCreate, req);
}

ChatClient::Reply<v1::GroupResp> ChatClient::get_group(const std::string& gid, bool with_members) {
  v1::GroupGetReq req;
  req.set_gid(gid);
  req.set_with_members(with_members);
  return call<v1::GroupResp>(Cmd::kGroupGet, req);
}

ChatClient::Reply<v1::GroupListResp> ChatClient::list_groups() {
  return call<v1::GroupListResp>(Cmd::kGroupList, v1::GroupIdReq{});
}

namespace {
v1::GroupMembersReq members_req(const std::string& gid, const std::vector<std::string>& uids) {
  v1::GroupMembersReq req;
  req.set_gid(gid);
  for (const auto& u : uids) req.add_uids(u);
  return req;
}
}  // namespace

ChatClient::Reply<v1::GroupMembersResp> ChatClient::add_members(const std::string& gid,
                                                                const std::vector<std::string>& uids) {
  return call<v1::GroupMembersResp>(Cmd::kGroupAddMembers, members_req(gid, uids));
}

ChatClient::Reply<v1::GroupMembersResp> ChatClient::remove_members(const std::string& gid,
                                                                   const std::vector<std::string>& uids) {
  return call<v1::GroupMembersResp>(Cmd::kGroupRemoveMembers, members_req(gid, uids));
}

ChatClient::Reply<v1::GroupResp> ChatClient::update_group(const v1::GroupUpdateReq& req) {
  return call<v1::GroupResp>(Cmd::kGroupUpdate, req);
}

ChatClient::Reply<Ok> ChatClient::report(v1::ReportReq req) {
  if (req.report_id().empty()) req.set_report_id(new_client_msg_id());
  return call<Ok>(Cmd::kReport, req);
}

ChatClient::Reply<Ok> ChatClient::leave_group(const std::string& gid) {
  v1::GroupIdReq req;
  req.set_gid(gid);
  return call<Ok>(Cmd::kGroupLeave, req);
}

ChatClient::Reply<Ok> ChatClient::dismiss_group(const std::string& gid) {
  v1::GroupIdReq req;
  req.set_gid(gid);
  return call<Ok>(Cmd::kGroupDismiss, req);
}

}  // namespace im
