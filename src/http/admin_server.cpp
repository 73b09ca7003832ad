#include "http/admin_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <chrono>
#include <future>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string_view>
#include <utility>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "auth/jwt.h"
#include "common/base64.h"
#include "common/metrics.h"
#include "config/config_loader.h"
#include "core/group_command.h"
#include "core/ids.h"
#include "core/names.h"
#include "core/requests.h"
#include "core/service.h"
#include "http/json_body.h"

namespace im::http {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxBodyBytes = 1 << 20;
constexpr auto kCoreTimeout = std::chrono::seconds(10);
// Long requests at once (exports stream for minutes; a backup copies the
// store), and the threads that serve everything: the rest stay free.
constexpr int kMaxExports = 2;
constexpr int kMaxBackups = 2;
constexpr int kAdminThreads = 8;
constexpr std::uint32_t kBusyRetryMs = 5000;
constexpr auto kExportMaxTime = std::chrono::minutes(30);
// POST /v1/tokens' ttl_s when absent, and its upper bound (30 days: a
// longer-lived session logs in again with a fresh token; over it is
// BAD_REQUEST, not clamped, so a caller never holds a shorter token than
// it asked for without knowing).
constexpr std::int64_t kDefaultTokenTtlS = 86400;
constexpr std::int64_t kMaxTokenTtlS = 30ll * 86400;

// ---------------------------------------------------------------- answers

// A handler's answer when it succeeds; a failure is an im::Error, written
// by write_error.
struct Reply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  // Set: the answer is streamed (chunked) by calling it until it says done,
  // instead of `body`.
  std::function<bool(std::size_t offset, httplib::DataSink& sink)> stream;
};
using Answer = Result<Reply>;

// Never throws: text that is not UTF-8 (an id cut in an error message) is
// replaced, not refused.
std::string json_text(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

Reply json_reply(const json& doc, int status = 200) {
  return {status, json_text(doc), "application/json", {}};
}

Error bad_request(std::string why) {
  return make_error(StatusCode::kBadRequest, std::move(why));
}

int http_status(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kBadRequest:
    case StatusCode::kTooLarge: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kForbidden: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kConflict: return 409;
    case StatusCode::kGone:
    case StatusCode::kExpired: return 410;
    case StatusCode::kRateLimited: return 429;
    case StatusCode::kDisabled: return 501;
    case StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

// The one place that writes an error: PROTOCOL 6's {"error", "status"}.
void write_error(httplib::Response& res, int http, std::string_view status, const std::string& why) {
  res.status = http;
  res.set_content(json_text({{"error", why}, {"status", std::string(status)}}), "application/json");
}

void write_error(httplib::Response& res, const Error& e) {
  write_error(res, http_status(e.code), status_name(e.code), e.message);
  if (e.retry_after_ms > 0) res.set_header("Retry-After", std::to_string((e.retry_after_ms + 999) / 1000));
}

// The one place that waits for core: runs `start`, which hands the facade
// call the callback it is given, and waits at most kCoreTimeout for the
// answer (from a shard thread, or at once when the facade refuses).
template <class T, class Start>
Result<T> ask_core(Start&& start) {
  auto answer = std::make_shared<std::promise<Result<T>>>();
  auto future = answer->get_future();
  start([answer](Result<T> r) { answer->set_value(std::move(r)); });
  if (future.wait_for(kCoreTimeout) != std::future_status::ready)
    return make_error(StatusCode::kUnavailable, "the server did not answer in time");
  return future.get();
}

// The bearer key of every /v1 call, compared in constant time (as HMACs,
// so the length leaks nothing either). An empty key admits nobody.
bool authorized(const httplib::Request& req, const std::string& key) {
  static constexpr std::string_view kBearer = "Bearer ";
  const std::string header = req.get_header_value("Authorization");
  return !key.empty() && header.rfind(kBearer, 0) == 0 &&
         CRYPTO_memcmp(hmac_sha256("im-admin", header.substr(kBearer.size())).data(),
                       hmac_sha256("im-admin", key).data(), 32) == 0;
}

// ---------------------------------------------------------------- handlers

// What a handler sees: the request and the server's parts. Handlers run on
// the HTTP pool's threads.
struct Call {
  const httplib::Request& req;
  core::Service& service;
  const Config& config;
  const std::atomic<bool>& draining;
  const std::shared_ptr<std::atomic<int>>& exports;
  const std::shared_ptr<std::atomic<int>>& backups;

  std::string param() const { return req.matches[1]; }  // the path's {uid} or {gid}
};

json group_json(const v1::GroupResp& g) {
  json members = json::array();
  for (const auto& m : g.members()) members.push_back(m);
  return {{"group",
           {{"gid", g.group().gid()},
            {"name", g.group().name()},
            {"owner", g.group().owner()},
            {"announcement", g.group().announcement()},
            {"created_ms", g.group().created_ms()},
            {"member_count", g.group().member_count()}}},
          {"members", members}};
}

// A Message with PROTOCOL 6's conventions: 64-bit ids as decimal strings,
// enums as lowercase names, the body in base64.
json message_json(const v1::Message& m) {
  return {{"msg_id", std::to_string(m.msg_id())},
          {"conv_type", core::conv_type_name(m.conv_type())},
          {"from", m.from()},
          {"to", m.to()},
          {"conv_seq", std::to_string(m.conv_seq())},
          {"inbox_seq", std::to_string(m.inbox_seq())},
          {"client_msg_id", m.client_msg_id()},
          {"content_type", m.content_type()},
          {"body", base64_encode(m.body())},
          {"server_time_ms", m.server_time_ms()},
          {"topic", m.topic()},
          {"edit_version", m.edit_version()},
          {"edited_ms", m.edited_ms()}};
}

json conversation_json(const v1::Conversation& c) {
  json out = {{"conv_type", core::conv_type_name(c.conv_type())},
              {"peer", c.peer()},
              {"last_conv_seq", std::to_string(c.last_conv_seq())},
              {"read_seq", std::to_string(c.read_seq())},
              {"unread_count", c.unread_count()},
              {"peer_read_seq", std::to_string(c.peer_read_seq())},
              {"muted", c.muted()},
              {"pinned", c.pinned()},
              {"activity_ms", c.activity_ms()},
              {"cleared_seq", std::to_string(c.cleared_seq())}};
  if (c.has_last_message()) out["last_message"] = message_json(c.last_message());
  return out;
}

// A query parameter that must be a decimal number (absent: `fallback`).
Result<std::uint64_t> query_number(const httplib::Request& req, const char* name, std::uint64_t fallback) {
  if (!req.has_param(name)) return fallback;
  const std::string v = req.get_param_value(name);
  if (v.empty() || v.size() > 19 || v.find_first_not_of("0123456789") != std::string::npos)
    return bad_request(std::string(name) + " must be a decimal number");
  return std::stoull(v);
}

// A SEND's or RECALL's answer: {msg_id, conv_seq, duplicate}.
Answer send_answer(const Result<v1::SendResp>& r) {
  if (!r) return r.error();
  return json_reply({{"msg_id", std::to_string(r->msg_id())},
                     {"conv_seq", std::to_string(r->conv_seq())},
                     {"duplicate", r->duplicate()}});
}

Answer group_answer(const Result<core::GroupReply>& r) {
  if (!r) return r.error();
  return json_reply(group_json(r->group));
}

Answer get_healthz(const Call& c) {
  if (c.draining.load()) return json_reply({{"status", "draining"}}, 503);
  return json_reply({{"status", "ok"}});
}

Answer get_metrics(const Call&) {
  return Reply{200, metrics::get().render(), "text/plain; version=0.0.4", {}};
}

Answer post_token(const Call& c) {
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  auto uid = b->str("uid");
  auto ttl = b->integer("ttl_s");
  if (auto ok = b->status(); !ok) return ok.error();
  if (!core::valid_id(*uid)) return bad_request("uid must be 1 to 64 bytes of A-Z a-z 0-9 . _ @ -");
  const std::int64_t ttl_s = ttl.value_or(kDefaultTokenTtlS);
  if (ttl_s < 1 || ttl_s > kMaxTokenTtlS) return bad_request("ttl_s must be 1 to " + std::to_string(kMaxTokenTtlS));
  return json_reply({{"token", c.service.mint_token(*uid, ttl_s)}});
}

Answer post_message(const Call& c) {
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  auto from = b->str("from");
  auto type = b->str("conv_type");
  auto to = b->str("to");
  auto content_type = b->integer("content_type");
  std::string body = b->bytes("body");
  auto client_msg_id = b->str("client_msg_id");
  if (auto ok = b->status(); !ok) return ok.error();
  auto conv_type = core::conv_type_of(*type);
  if (!conv_type) return bad_request("conv_type must be \"c2c\" or \"group\"");
  if (content_type && (*content_type < 0 || *content_type > std::numeric_limits<std::uint32_t>::max()))
    return bad_request("content_type out of range");
  v1::SendReq req;
  req.set_conv_type(static_cast<v1::ConvType>(*conv_type));
  req.set_to(*to);
  req.set_content_type(static_cast<std::uint32_t>(content_type.value_or(0)));
  req.set_body(std::move(body));
  req.set_client_msg_id(*client_msg_id);
  auto r = ask_core<v1::SendResp>([&](auto done) { c.service.send_as(*from, std::move(req), done); });
  return send_answer(r);
}

// A moderator's RECALL on behalf of `from`: any message, no window.
Answer post_recall(const Call& c) {
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  auto from = b->str("from");
  auto type = b->str("conv_type");
  auto to = b->str("to");
  auto conv_seq = b->str("conv_seq");
  auto client_msg_id = b->str("client_msg_id");
  if (auto ok = b->status(); !ok) return ok.error();
  auto conv_type = core::conv_type_of(*type);
  if (!conv_type) return bad_request("conv_type must be \"c2c\" or \"group\"");
  if (conv_seq->empty() || conv_seq->size() > 19 || conv_seq->find_first_not_of("0123456789") != std::string::npos)
    return bad_request("conv_seq must be a string of decimal digits");
  v1::RecallReq req;
  req.set_client_msg_id(*client_msg_id);
  req.set_conv_type(static_cast<v1::ConvType>(*conv_type));
  req.set_peer(*to);
  req.set_conv_seq(std::stoull(*conv_seq));
  auto r = ask_core<v1::SendResp>([&](auto done) { c.service.recall_as(*from, std::move(req), done); });
  return send_answer(r);
}

Answer post_push(const Call& c) {
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  auto to = b->str("to");
  auto topic = b->str("topic", false);
  const std::string payload = b->bytes("payload");
  const bool persist = b->boolean("persist");
  if (auto ok = b->status(); !ok) return ok.error();
  auto r = ask_core<std::pair<std::uint64_t, std::uint32_t>>(
      [&](auto done) { c.service.server_push(*to, topic.value_or(""), payload, persist, done); });
  if (!r) return r.error();
  return json_reply({{"push_id", std::to_string(r->first)}, {"delivered_sessions", r->second}});
}

Answer get_presence(const Call& c) {
  const std::string uid = c.param();
  if (!core::valid_id(uid)) return bad_request("bad uid");
  auto p = ask_core<v1::Presence>([&](auto done) { c.service.presence(uid, done); });
  if (!p) return p.error();
  json devices = json::array();
  for (int d : p->devices()) devices.push_back(core::device_type_name(static_cast<std::uint8_t>(d)));
  return json_reply(
      {{"uid", p->uid()}, {"online", p->online()}, {"devices", devices}, {"last_seen_ms", p->last_seen_ms()}});
}

Answer get_conversations(const Call& c) {
  const std::string uid = c.param();
  if (!core::valid_id(uid)) return bad_request("bad uid");
  auto limit = query_number(c.req, "limit", 0);
  if (!limit) return limit.error();
  v1::ConvListReq req;
  req.set_cursor(c.req.get_param_value("cursor"));
  req.set_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(*limit, 1000)));
  auto r = ask_core<v1::ConvListResp>([&](auto done) { c.service.conversations(uid, std::move(req), done); });
  if (!r) return r.error();
  json list = json::array();
  for (const auto& conv : r->conversations()) list.push_back(conversation_json(conv));
  return json_reply({{"conversations", list},
                     {"next_cursor", r->next_cursor()},
                     {"has_more", r->has_more()},
                     {"total_unread", r->total_unread()},
                     {"inbox_seq", std::to_string(r->inbox_seq())}});
}

// SEARCH as the user (PROTOCOL 8.6): q, and conv_type ("c2c" or "group")
// with peer to search one conversation.
Answer get_search(const Call& c) {
  const std::string uid = c.param();
  if (!core::valid_id(uid)) return bad_request("bad uid");
  auto limit = query_number(c.req, "limit", 0);
  if (!limit) return limit.error();
  v1::SearchReq req;
  req.set_query(c.req.get_param_value("q"));
  req.set_cursor(c.req.get_param_value("cursor"));
  req.set_limit(static_cast<std::uint32_t>(std::min<std::uint64_t>(*limit, core::kSearchMax)));
  if (c.req.has_param("conv_type")) {
    auto type = core::conv_type_of(c.req.get_param_value("conv_type"));
    if (!type) return bad_request("conv_type must be c2c or group");
    req.set_conv_type(static_cast<v1::ConvType>(*type));
  }
  req.set_peer(c.req.get_param_value("peer"));
  // The admin API is not limited (PROTOCOL 5): no per-user slots.
  auto r = ask_core<v1::SearchResp>([&](auto done) { c.service.search(uid, std::move(req), false, done); });
  if (!r) return r.error();
  json list = json::array();
  for (const auto& m : r->messages()) list.push_back(message_json(m));
  return json_reply({{"messages", list}, {"next_cursor", r->next_cursor()}, {"has_more", r->has_more()}});
}

// One of a bounded number of places for a long request, held while it lives.
class Slot {
 public:
  static std::optional<Slot> take(const std::shared_ptr<std::atomic<int>>& count, int max) {
    if (count->fetch_add(1) >= max) {
      count->fetch_sub(1);
      return std::nullopt;
    }
    return Slot(count);
  }
  Slot(Slot&& other) noexcept : count_(std::move(other.count_)) {}
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;
  Slot& operator=(Slot&&) = delete;
  ~Slot() {
    if (count_) count_->fetch_sub(1);
  }

 private:
  explicit Slot(std::shared_ptr<std::atomic<int>> count) : count_(std::move(count)) {}
  std::shared_ptr<std::atomic<int>> count_;
};

Error busy(const std::string& what) {
  return Error{StatusCode::kUnavailable, what, kBusyRetryMs};
}

// Backups run one at a time; one more may wait for it.
Answer post_backup(const Call& c) {
  auto slot = Slot::take(c.backups, kMaxBackups);
  if (!slot) return busy("a backup is running and another waits: try again later");
  auto b = c.service.backup();
  if (!b) return b.error();
  return json_reply({{"path", b->path}, {"size_bytes", b->size_bytes}, {"time_ms", b->time_ms}});
}

// GET /v1/users/{uid}/export: NDJSON, streamed a page at a time (500 inbox
// rows), so its memory does not grow with the inbox: the user, every
// message kept in the inbox as PULL gives it, then the user's groups. An
// error after the first line (the status is sent by then) ends the stream
// with a {"type": "error"} line.
class Export {
 public:
  Export(core::Service& service, std::string uid, Slot slot)
      : service_(service), uid_(std::move(uid)), slot_(std::move(slot)) {}

  bool next(httplib::DataSink& sink) {
    // A reader that keeps reading a little would hold the slot for ever.
    if (phase_ != Phase::kDone && std::chrono::steady_clock::now() - started_ > kExportMaxTime)
      return fail(sink, "the export took longer than 30 minutes: read it faster");
    std::string out;
    switch (phase_) {
      case Phase::kUser:
        out = json_text({{"type", "user"}, {"uid", uid_}}) + "\n";
        phase_ = Phase::kMessages;
        break;
      case Phase::kMessages: {
        auto page = ask_core<std::string>(
            [&](auto done) { service_.inbox_page(uid_, after_, kExportPage, done); });
        v1::PullResp resp;
        if (!page) return fail(sink, page.error().message);
        if (!resp.ParseFromString(*page)) return fail(sink, "an inbox page that does not parse");
        for (const auto& m : resp.messages()) {
          json line = message_json(m);
          line["type"] = "message";
          out += json_text(line) + "\n";
          after_ = m.inbox_seq();
        }
        if (!resp.has_more() || resp.messages_size() == 0) phase_ = Phase::kGroups;
        break;
      }
      case Phase::kGroups: {
        auto page =
            ask_core<core::Service::GroupPage>([&](auto done) { service_.groups_page(uid_, after_gid_, done); });
        if (!page) return fail(sink, page.error().message);
        for (const auto& g : page->list.groups())
          out += json_text({{"type", "group"},
                            {"gid", g.gid()},
                            {"name", g.name()},
                            {"owner", g.owner()},
                            {"announcement", g.announcement()},
                            {"created_ms", g.created_ms()},
                            {"member_count", g.member_count()}}) +
                 "\n";
        // A page that made no progress (one group over a frame) cannot loop.
        if (!page->more || page->list.groups_size() == 0)
          phase_ = Phase::kDone;
        else
          after_gid_ = page->list.groups().rbegin()->gid();
        break;
      }
      case Phase::kDone:
        sink.done();
        return true;
    }
    return out.empty() || sink.write(out.data(), out.size());
  }

 private:
  static constexpr std::uint32_t kExportPage = 500;
  enum class Phase { kUser, kMessages, kGroups, kDone };

  bool fail(httplib::DataSink& sink, const std::string& why) {
    const std::string line = json_text({{"type", "error"}, {"error", why}}) + "\n";
    sink.write(line.data(), line.size());
    sink.done();
    phase_ = Phase::kDone;
    return true;
  }

  core::Service& service_;
  std::string uid_;
  Slot slot_;
  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  Phase phase_ = Phase::kUser;
  std::uint64_t after_ = 0;
  std::string after_gid_;
};

Answer get_export(const Call& c) {
  const std::string uid = c.param();
  if (!core::valid_id(uid)) return bad_request("bad uid");
  auto slot = Slot::take(c.exports, kMaxExports);
  if (!slot) return busy(fmt::format("{} exports are under way: try again later", kMaxExports));
  auto state = std::make_shared<Export>(c.service, uid, std::move(*slot));
  Reply reply;
  reply.content_type = "application/x-ndjson";
  reply.stream = [state](std::size_t, httplib::DataSink& sink) { return state->next(sink); };
  return reply;
}

Answer get_receipts(const Call& c) {
  const std::string gid = c.param();
  if (!core::valid_id(gid)) return bad_request("bad gid");
  if (!c.req.has_param("conv_seq")) return bad_request("conv_seq is required");
  auto seq = query_number(c.req, "conv_seq", 0);
  if (!seq) return seq.error();
  if (*seq == 0) return bad_request("conv_seq must be at least 1");
  auto r = ask_core<v1::ReceiptsResp>([&](auto done) { c.service.receipts(gid, *seq, done); });
  if (!r) return r.error();
  const v1::ReadCount& count = r->counts(0);
  return json_reply({{"conv_seq", std::to_string(count.conv_seq())},
                     {"read_count", count.read_count()},
                     {"member_count", count.member_count()}});
}

// The body is optional: none (or empty) kicks without revoking.
Answer post_kick(const Call& c) {
  const std::string uid = c.param();
  if (!core::valid_id(uid)) return bad_request("bad uid");
  bool revoke = false;
  if (c.req.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    auto b = JsonBody::parse(c.req.body);
    if (!b) return b.error();
    revoke = b->boolean("revoke");
    if (auto ok = b->status(); !ok) return ok.error();
  }
  auto n = ask_core<std::uint32_t>([&](auto done) { c.service.kick_user(uid, revoke, done); });
  if (!n) return n.error();
  return json_reply({{"kicked_sessions", *n}});
}

Answer post_group(const Call& c) {
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  auto gid = b->str("gid", false);  // absent or "": the core names the group
  auto name = b->str("name");
  auto owner = b->str("owner");
  auto members = b->strings("members");
  auto announcement = b->str("announcement", false);
  if (auto ok = b->status(); !ok) return ok.error();
  v1::GroupCreateReq req;
  req.set_gid(gid.value_or(""));
  req.set_name(*name);
  req.set_announcement(announcement.value_or(""));
  for (auto& m : members) req.add_members(std::move(m));
  return group_answer(
      ask_core<core::GroupReply>([&](auto done) { c.service.group_create(*owner, std::move(req), done); }));
}

Answer get_group(const Call& c) {
  return group_answer(ask_core<core::GroupReply>([&](auto done) { c.service.group_get(c.param(), done); }));
}

// Adds, then removes; answers the member count after the last change.
Answer post_members(const Call& c) {
  const std::string gid = c.param();
  if (!core::valid_id(gid)) return bad_request("bad gid");
  auto b = JsonBody::parse(c.req.body);
  if (!b) return b.error();
  std::vector<std::string> add = b->strings("add");
  std::vector<std::string> remove = b->strings("remove");
  if (auto ok = b->status(); !ok) return ok.error();
  if (add.empty() && remove.empty()) return bad_request("add or remove must list uids");
  std::uint32_t count = 0;
  for (auto step : {std::pair{Cmd::kGroupAddMembers, &add}, std::pair{Cmd::kGroupRemoveMembers, &remove}}) {
    // Plain variables, not a structured binding: clang 14 (the fuzz build)
    // cannot capture those in the lambda below.
    const Cmd which = step.first;
    std::vector<std::string>* uids = step.second;
    if (uids->empty()) continue;
    auto r =
        ask_core<core::GroupReply>([&](auto done) { c.service.group_members(which, gid, std::move(*uids), done); });
    if (!r) return r.error();
    count = r->members.member_count();
  }
  return json_reply({{"member_count", count}});
}

Answer delete_group(const Call& c) {
  auto r = ask_core<core::GroupReply>([&](auto done) { c.service.group_dismiss(c.param(), done); });
  if (!r) return r.error();
  return json_reply(json::object());
}

// ---------------------------------------------------------------- the table

enum class Method { kGet, kPost, kDelete };

struct Route {
  Method method;
  const char* pattern;  // a std::regex over the path; ([^/]+) is Call::param()
  bool needs_auth;      // the bearer key of admin.api_key
  Answer (*handler)(const Call&);
};

constexpr Route kRoutes[] = {
    {Method::kGet, "/healthz", false, get_healthz},
    {Method::kGet, "/metrics", false, get_metrics},
    {Method::kPost, "/v1/tokens", true, post_token},
    {Method::kPost, "/v1/messages", true, post_message},
    {Method::kPost, "/v1/messages/recall", true, post_recall},
    {Method::kPost, "/v1/push", true, post_push},
    {Method::kGet, R"(/v1/users/([^/]+)/presence)", true, get_presence},
    {Method::kPost, R"(/v1/users/([^/]+)/kick)", true, post_kick},
    {Method::kGet, R"(/v1/users/([^/]+)/conversations)", true, get_conversations},
    {Method::kGet, R"(/v1/users/([^/]+)/search)", true, get_search},
    {Method::kGet, R"(/v1/users/([^/]+)/export)", true, get_export},
    {Method::kPost, "/v1/backup", true, post_backup},
    {Method::kGet, R"(/v1/groups/([^/]+)/receipts)", true, get_receipts},
    {Method::kPost, "/v1/groups", true, post_group},
    {Method::kGet, R"(/v1/groups/([^/]+))", true, get_group},
    {Method::kPost, R"(/v1/groups/([^/]+)/members)", true, post_members},
    {Method::kDelete, R"(/v1/groups/([^/]+))", true, delete_group},
};

// The one entry point of every routed request: the key when the route
// needs it, then the handler; writes its answer.
void serve(const Route& route, const Call& call, httplib::Response& res) {
  if (route.needs_auth && !authorized(call.req, call.config.admin.api_key))
    return write_error(res, make_error(StatusCode::kUnauthenticated, "missing or wrong admin API key"));
  Answer answer = route.handler(call);
  if (!answer) return write_error(res, answer.error());
  res.status = answer->status;
  if (answer->stream)
    res.set_chunked_content_provider(answer->content_type, std::move(answer->stream));
  else
    res.set_content(answer->body, answer->content_type);
}

// No answer of this API is cut into byte ranges: httplib would serve each
// range of a Range header (multipart for several, on any route, errors
// included), so 2,500 ranges turned 4.5 KB of /metrics into 11.5 MB. The
// ranges it parsed are dropped and the whole answer goes out (RFC 9110
// lets a server ignore Range). httplib hands handlers its own, non-const
// request as const, so clearing them is well defined; a Range header it
// cannot parse is its own 416 (answered by on_http_error, also whole).
void drop_ranges(const httplib::Request& req) {
  const_cast<httplib::Request&>(req).ranges.clear();
}

// httplib's own refusals (no route, a body over kMaxBodyBytes, a request
// it cannot read), in the same JSON; a reply already written stays.
void on_http_error(const httplib::Request& req, httplib::Response& res) {
  drop_ranges(req);
  if (!res.body.empty()) return;
  if (res.status == 404) {
    write_error(res, make_error(StatusCode::kNotFound, "no such endpoint"));
  } else if (res.status == 413) {
    write_error(res, 413, "TOO_LARGE", "body too large");
  } else if (res.status >= 400) {
    write_error(res, res.status, res.status >= 500 ? "INTERNAL" : "BAD_REQUEST", "bad request");
  }
}

}  // namespace

AdminServer::AdminServer(const Config& config, core::Service& service, const std::atomic<bool>& draining)
    : config_(config), service_(service), draining_(draining), server_(std::make_unique<httplib::Server>()) {}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::start() {
  auto hp = parse_host_port(config_.admin.listen);
  if (!hp) throw std::runtime_error("admin.listen: " + hp.error().message);
  // kMaxExports + kMaxBackups threads may be held long; the rest serve
  // everything else.
  server_->new_task_queue = [] { return new httplib::ThreadPool(kAdminThreads); };
  server_->set_payload_max_length(kMaxBodyBytes);
  server_->set_read_timeout(10, 0);
  server_->set_write_timeout(10, 0);
  routes();
  host_ = hp->host;
  if (hp->port == 0) {
    const int port = server_->bind_to_any_port(host_);
    if (port <= 0) throw std::runtime_error("admin.listen: cannot listen on " + config_.admin.listen);
    port_ = static_cast<std::uint16_t>(port);
  } else {
    if (!server_->bind_to_port(host_, hp->port))
      throw std::runtime_error("admin.listen: cannot listen on " + config_.admin.listen);
    port_ = hp->port;
  }
  if (config_.admin.api_key.empty()) spdlog::warn("admin.api_key is empty: every /v1 call answers 401");
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  // A stop() before the thread is listening would be lost (and its join
  // would hang): return only once it listens.
  for (int i = 0; i < 5000 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

void AdminServer::stop() {
  if (!thread_.joinable()) return;
  server_->stop();
  thread_.join();
}

void AdminServer::routes() {
  httplib::Server& s = *server_;
  s.set_error_handler(on_http_error);
  s.set_pre_routing_handler([](const httplib::Request& req, httplib::Response&) {
    drop_ranges(req);
    return httplib::Server::HandlerResponse::Unhandled;
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    write_error(res, make_error(StatusCode::kInternal, "internal error"));
  });
  for (const Route& route : kRoutes) {
    auto handler = [this, &route](const httplib::Request& req, httplib::Response& res) {
      serve(route, Call{req, service_, config_, draining_, exports_, backups_}, res);
    };
    switch (route.method) {
      case Method::kGet: s.Get(route.pattern, handler); break;
      case Method::kPost: s.Post(route.pattern, handler); break;
      case Method::kDelete: s.Delete(route.pattern, handler); break;
    }
  }
}

}  // namespace im::http
