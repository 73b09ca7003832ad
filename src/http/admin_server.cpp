#include "http/admin_server.h"

#include <httplib.h>
#include <openssl/crypto.h>

#include <chrono>
#include <future>
#include <optional>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <nlohmann/json.hpp>

#include "auth/jwt.h"
#include "common/base64.h"
#include "common/metrics.h"
#include "config/config_loader.h"
#include "core/ids.h"
#include "core/names.h"
#include "core/service.h"

namespace im::http {
namespace {

using json = nlohmann::json;

constexpr std::size_t kMaxBodyBytes = 1 << 20;
constexpr auto kCoreTimeout = std::chrono::seconds(10);
constexpr std::int64_t kDefaultTokenTtlS = 86400;
constexpr std::int64_t kMaxTokenTtlS = 10ll * 365 * 86400;
constexpr std::size_t kMaxTopicBytes = 256;

int http_status(StatusCode code) {
  switch (code) {
    case StatusCode::kOk: return 200;
    case StatusCode::kBadRequest:
    case StatusCode::kTooLarge: return 400;
    case StatusCode::kUnauthenticated: return 401;
    case StatusCode::kForbidden: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kConflict: return 409;
    case StatusCode::kRateLimited: return 429;
    case StatusCode::kUnavailable: return 503;
    default: return 500;
  }
}

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

void fail(httplib::Response& res, StatusCode code, const std::string& why) {
  reply(res, http_status(code), {{"error", why}, {"status", std::string(status_name(code))}});
}

// A request body field, typed; an error message when it is missing (and
// required) or of another type.
struct Body {
  json doc;
  std::string error;

  std::optional<std::string> str(const char* key, bool required = true) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) {
      if (required && error.empty()) error = std::string(key) + " is required";
      return std::nullopt;
    }
    if (!it->is_string()) {
      if (error.empty()) error = std::string(key) + " must be a string";
      return std::nullopt;
    }
    return it->get<std::string>();
  }
  std::optional<std::int64_t> integer(const char* key) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) return std::nullopt;
    if (!it->is_number_integer()) {
      if (error.empty()) error = std::string(key) + " must be an integer";
      return std::nullopt;
    }
    return it->get<std::int64_t>();
  }
  bool boolean(const char* key) {
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) return false;
    if (!it->is_boolean()) {
      if (error.empty()) error = std::string(key) + " must be true or false";
      return false;
    }
    return it->get<bool>();
  }
  std::vector<std::string> strings(const char* key) {
    std::vector<std::string> out;
    auto it = doc.find(key);
    if (it == doc.end() || it->is_null()) return out;
    if (!it->is_array()) {
      if (error.empty()) error = std::string(key) + " must be an array of strings";
      return out;
    }
    for (const auto& v : *it) {
      if (!v.is_string()) {
        if (error.empty()) error = std::string(key) + " must be an array of strings";
        return {};
      }
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  // A base64 field decoded ("" when absent).
  std::string bytes(const char* key) {
    auto text = str(key, false);
    std::string out;
    if (text && !base64_decode(*text, out) && error.empty()) error = std::string(key) + " must be base64";
    return out;
  }
};

std::optional<Body> parse_body(const httplib::Request& req, httplib::Response& res) {
  Body b{json::parse(req.body, nullptr, false), ""};
  if (b.doc.is_discarded() || !b.doc.is_object()) {
    fail(res, StatusCode::kBadRequest, "the body must be a JSON object");
    return std::nullopt;
  }
  return b;
}

// Runs `start` (which hands its answer to the callback it is given, on a
// shard thread) and waits for that answer, at most kCoreTimeout.
template <class T, class Start>
std::optional<T> ask_core(Start&& start) {
  auto answer = std::make_shared<std::promise<T>>();
  auto future = answer->get_future();
  start([answer](T value) { answer->set_value(std::move(value)); });
  if (future.wait_for(kCoreTimeout) != std::future_status::ready) return std::nullopt;
  return future.get();
}

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

}  // namespace

AdminServer::AdminServer(const Config& config, core::Service& service, const std::atomic<bool>& draining)
    : config_(config), service_(service), draining_(draining), server_(std::make_unique<httplib::Server>()) {}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::start() {
  auto hp = parse_host_port(config_.admin.listen);
  if (!hp) throw std::runtime_error("admin.listen: " + hp.error().message);
  server_->new_task_queue = [] { return new httplib::ThreadPool(4); };
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
  // Every /v1 call: the bearer key, compared in constant time (as HMACs,
  // so the length leaks nothing either).
  auto authorized = [this](const httplib::Request& req, httplib::Response& res) {
    const std::string& key = config_.admin.api_key;
    const std::string header = req.get_header_value("Authorization");
    static constexpr std::string_view kBearer = "Bearer ";
    const bool ok = !key.empty() && header.rfind(kBearer, 0) == 0 &&
                    CRYPTO_memcmp(hmac_sha256("im-admin", header.substr(kBearer.size())).data(),
                                  hmac_sha256("im-admin", key).data(), 32) == 0;
    if (!ok) fail(res, StatusCode::kUnauthenticated, "missing or wrong admin API key");
    return ok;
  };
  auto timeout = [](httplib::Response& res) {
    fail(res, StatusCode::kUnavailable, "the server did not answer in time");
  };

  s.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 404) {
      fail(res, StatusCode::kNotFound, "no such endpoint");
    } else if (res.status == 413) {
      reply(res, 413, {{"error", "body too large"}, {"status", "TOO_LARGE"}});
    } else if (res.status >= 400) {
      reply(res, res.status, {{"error", "bad request"}, {"status", res.status >= 500 ? "INTERNAL" : "BAD_REQUEST"}});
    }
  });
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr) {
    fail(res, StatusCode::kInternal, "internal error");
  });

  s.Get("/healthz", [this](const httplib::Request&, httplib::Response& res) {
    if (draining_.load()) {
      reply(res, 503, {{"status", "draining"}});
    } else {
      reply(res, 200, {{"status", "ok"}});
    }
  });
  s.Get("/metrics", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics::get().render(), "text/plain; version=0.0.4");
  });

  s.Post("/v1/tokens", [=, this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto b = parse_body(req, res);
    if (!b) return;
    auto uid = b->str("uid");
    auto ttl = b->integer("ttl_s");
    if (!b->error.empty()) return fail(res, StatusCode::kBadRequest, b->error);
    if (!core::valid_id(*uid))
      return fail(res, StatusCode::kBadRequest, "uid must be 1 to 64 bytes of A-Z a-z 0-9 . _ @ -");
    const std::int64_t ttl_s = ttl.value_or(kDefaultTokenTtlS);
    if (ttl_s < 1 || ttl_s > kMaxTokenTtlS) return fail(res, StatusCode::kBadRequest, "ttl_s must be 1 to 315360000");
    reply(res, 200, {{"token", service_.mint_token(*uid, ttl_s)}});
  });

  s.Post("/v1/messages", [=, this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto b = parse_body(req, res);
    if (!b) return;
    core::Service::SendSpec spec;
    auto from = b->str("from");
    auto type = b->str("conv_type");
    auto to = b->str("to");
    auto content_type = b->integer("content_type");
    spec.body = b->bytes("body");
    auto cmid = b->str("client_msg_id");
    if (!b->error.empty()) return fail(res, StatusCode::kBadRequest, b->error);
    auto conv_type = core::conv_type_of(*type);
    if (!conv_type) return fail(res, StatusCode::kBadRequest, "conv_type must be \"c2c\" or \"group\"");
    if (content_type && (*content_type < 0 || *content_type > 0xFFFFFFFFll))
      return fail(res, StatusCode::kBadRequest, "content_type out of range");
    spec.from = *from;
    spec.to = *to;
    spec.conv_type = *conv_type;
    spec.content_type = static_cast<std::uint32_t>(content_type.value_or(0));
    spec.client_msg_id = *cmid;
    struct Answer {
      StatusCode status;
      std::string error;
      v1::SendResp resp;
    };
    auto a = ask_core<Answer>([&](auto done) {
      service_.send_as(std::move(spec), [done](StatusCode st, const std::string& why, const v1::SendResp& r) {
        done(Answer{st, why, r});
      });
    });
    if (!a) return timeout(res);
    if (a->status != StatusCode::kOk) return fail(res, a->status, a->error);
    reply(res, 200,
          {{"msg_id", std::to_string(a->resp.msg_id())},
           {"conv_seq", std::to_string(a->resp.conv_seq())},
           {"duplicate", a->resp.duplicate()}});
  });

  s.Post("/v1/push", [=, this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto b = parse_body(req, res);
    if (!b) return;
    auto to = b->str("to");
    auto topic = b->str("topic", false);
    std::string payload = b->bytes("payload");
    const bool persist = b->boolean("persist");
    if (!b->error.empty()) return fail(res, StatusCode::kBadRequest, b->error);
    if (!core::valid_id(*to)) return fail(res, StatusCode::kBadRequest, "to must be a valid uid");
    if (topic && topic->size() > kMaxTopicBytes) return fail(res, StatusCode::kBadRequest, "topic over 256 bytes");
    if (payload.size() > config_.limits.max_message_bytes)
      return fail(res, StatusCode::kTooLarge, "payload over limits.max_message_bytes");
    auto a = ask_core<std::pair<std::uint64_t, std::uint32_t>>([&](auto done) {
      service_.server_push(*to, topic.value_or(""), payload, persist, [done](std::uint64_t id, std::uint32_t n) {
        done({id, n});
      });
    });
    if (!a) return timeout(res);
    if (a->first == 0) return fail(res, StatusCode::kInternal, "the push could not be stored");
    reply(res, 200, {{"push_id", std::to_string(a->first)}, {"delivered_sessions", a->second}});
  });

  s.Get(R"(/v1/users/([^/]+)/presence)", [=, this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const std::string uid = req.matches[1];
    if (!core::valid_id(uid)) return fail(res, StatusCode::kBadRequest, "bad uid");
    auto p = ask_core<core::PresenceInfo>(
        [&](auto done) { service_.presence(uid, [done](const core::PresenceInfo& info) { done(info); }); });
    if (!p) return timeout(res);
    json devices = json::array();
    for (auto d : p->devices) devices.push_back(core::device_type_name(d));
    reply(res, 200, {{"uid", uid}, {"online", p->online}, {"devices", devices}, {"last_seen_ms", p->last_seen_ms}});
  });

  s.Post(R"(/v1/users/([^/]+)/kick)", [=, this](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const std::string uid = req.matches[1];
    if (!core::valid_id(uid)) return fail(res, StatusCode::kBadRequest, "bad uid");
    auto n = ask_core<std::uint32_t>([&](auto done) { service_.kick_user(uid, done); });
    if (!n) return timeout(res);
    reply(res, 200, {{"kicked_sessions", *n}});
  });

  // Group calls act with the owner's rights. Checks, runs and answers the
  // failures; the reply when the command succeeded.
  auto run_group = [this, timeout](std::shared_ptr<core::GroupCommand> cmd,
                                   httplib::Response& res) -> std::optional<core::GroupCommand::Reply> {
    cmd->admin = true;
    if (auto [status, why] = core::check_group_request(*cmd, config_.limits.max_group_members);
        status != StatusCode::kOk) {
      fail(res, status, why);
      return std::nullopt;
    }
    auto r = ask_core<core::GroupCommand::Reply>([&](auto done) {
      cmd->done = [done](core::GroupCommand::Reply& reply) { done(reply); };
      service_.group_command(cmd);
    });
    if (!r) {
      timeout(res);
      return std::nullopt;
    }
    if (r->status != StatusCode::kOk) {
      fail(res, r->status, r->error);
      return std::nullopt;
    }
    return r;
  };

  s.Post("/v1/groups", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto b = parse_body(req, res);
    if (!b) return;
    auto gid = b->str("gid", false);
    auto name = b->str("name");
    auto owner = b->str("owner");
    auto members = b->strings("members");
    auto announcement = b->str("announcement", false);
    if (!b->error.empty()) return fail(res, StatusCode::kBadRequest, b->error);
    auto cmd = std::make_shared<core::GroupCommand>();
    cmd->cmd = Cmd::kGroupCreate;
    cmd->actor = *owner;
    cmd->gid = gid && !gid->empty() ? *gid : core::new_group_id();
    cmd->create.set_gid(cmd->gid);
    cmd->create.set_name(*name);
    cmd->create.set_announcement(announcement.value_or(""));
    for (auto& m : members) cmd->create.add_members(m);
    if (auto r = run_group(cmd, res)) reply(res, 200, group_json(r->group));
  });

  s.Get(R"(/v1/groups/([^/]+))", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto cmd = std::make_shared<core::GroupCommand>();
    cmd->cmd = Cmd::kGroupGet;
    cmd->gid = req.matches[1];
    cmd->get.set_gid(cmd->gid);
    cmd->get.set_with_members(true);
    if (auto r = run_group(cmd, res)) reply(res, 200, group_json(r->group));
  });

  s.Post(R"(/v1/groups/([^/]+)/members)", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    const std::string gid = req.matches[1];
    if (!core::valid_id(gid)) return fail(res, StatusCode::kBadRequest, "bad gid");
    auto b = parse_body(req, res);
    if (!b) return;
    auto add = b->strings("add");
    auto remove = b->strings("remove");
    if (!b->error.empty()) return fail(res, StatusCode::kBadRequest, b->error);
    if (add.empty() && remove.empty()) return fail(res, StatusCode::kBadRequest, "add or remove must list uids");
    std::uint32_t count = 0;
    for (Cmd which : {Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers}) {
      auto& uids = which == Cmd::kGroupAddMembers ? add : remove;
      if (uids.empty()) continue;
      auto cmd = std::make_shared<core::GroupCommand>();
      cmd->cmd = which;
      cmd->gid = gid;
      cmd->members.set_gid(gid);
      for (auto& u : uids) cmd->members.add_uids(u);
      auto r = run_group(cmd, res);
      if (!r) return;
      count = r->members.member_count();
    }
    reply(res, 200, {{"member_count", count}});
  });

  s.Delete(R"(/v1/groups/([^/]+))", [=](const httplib::Request& req, httplib::Response& res) {
    if (!authorized(req, res)) return;
    auto cmd = std::make_shared<core::GroupCommand>();
    cmd->cmd = Cmd::kGroupDismiss;
    cmd->gid = req.matches[1];
    if (run_group(cmd, res)) reply(res, 200, json::object());
  });
}

}  // namespace im::http
