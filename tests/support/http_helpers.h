#pragma once
// An admin API client and a webhook receiver for integration tests.

#include <httplib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "wait_until.h"

namespace im::test {

struct HttpReply {
  int status = 0;
  nlohmann::json body;
  std::string text;
};

class AdminClient {
 public:
  AdminClient(std::uint16_t port, std::string key) : cli_("127.0.0.1", port), key_(std::move(key)) {
    cli_.set_connection_timeout(5, 0);
    cli_.set_read_timeout(15, 0);
  }
  HttpReply get(const std::string& path, bool auth = true) { return wrap(cli_.Get(path.c_str(), headers(auth))); }
  HttpReply post(const std::string& path, const nlohmann::json& body, bool auth = true) {
    return post_raw(path, body.dump(), auth);
  }
  HttpReply post_raw(const std::string& path, const std::string& body, bool auth = true) {
    return wrap(cli_.Post(path.c_str(), headers(auth), body, "application/json"));
  }
  HttpReply del(const std::string& path, bool auth = true) { return wrap(cli_.Delete(path.c_str(), headers(auth))); }
  void set_key(std::string key) { key_ = std::move(key); }
  // The value of an unlabelled metric of GET /metrics ("imserver_sessions"),
  // nullopt when the server does not report it: state a test can wait on.
  std::optional<double> metric(const std::string& name) {
    HttpReply r = get("/metrics", false);
    std::istringstream lines(r.text);
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    return std::nullopt;
  }

 private:
  httplib::Headers headers(bool auth) const {
    if (!auth) return {};
    return {{"Authorization", "Bearer " + key_}};
  }
  static HttpReply wrap(const httplib::Result& r) {
    REQUIRE(r);
    HttpReply out{r->status, nlohmann::json::parse(r->body, nullptr, false), r->body};
    return out;
  }
  httplib::Client cli_;
  std::string key_;
};

// Receives webhook POSTs on 127.0.0.1; can refuse the first N with 500, or
// answer each body with the status a test's function picks.
class WebhookReceiver {
 public:
  // The status for one POST (2xx: the event is kept); it may block, bounded.
  using Answer = std::function<int(const std::string& body)>;

  // `answer`, when given, is in place before the first POST can arrive (a
  // server retrying a backlog posts as soon as the port listens).
  explicit WebhookReceiver(std::uint16_t port = 0, Answer initial = nullptr) : answer_(std::move(initial)) {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      Answer answer;
      {
        std::lock_guard lock(mutex_);
        answer = answer_;
      }
      const int status = answer ? answer(req.body) : 200;
      std::lock_guard lock(mutex_);
      ++attempts_;
      if (refuse_ > 0) {
        --refuse_;
        res.status = 500;
        return;
      }
      if (status < 200 || status > 299) {
        res.status = status;
        return;
      }
      events_.push_back({req.body, req.get_header_value("X-IM-Signature")});
      cv_.notify_all();
      res.status = 200;
    });
    port_ = port == 0 ? static_cast<std::uint16_t>(server_.bind_to_any_port("127.0.0.1"))
                      : (server_.bind_to_port("127.0.0.1", port) ? port : 0);
    REQUIRE(port_ != 0);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    if (!wait_until([&] { return server_.is_running(); }, kWaitTimeout, std::chrono::milliseconds(1))) {
      server_.stop();  // joined before failing: a joinable thread must not be destroyed
      thread_.join();
      FAIL("the webhook receiver did not start listening");
    }
  }
  ~WebhookReceiver() {
    server_.stop();
    thread_.join();
  }
  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void refuse(int n) {
    std::lock_guard lock(mutex_);
    refuse_ = n;
  }
  void answer_with(Answer answer) {
    std::lock_guard lock(mutex_);
    answer_ = std::move(answer);
  }
  int attempts() {
    std::lock_guard lock(mutex_);
    return attempts_;
  }
  struct Event {
    std::string body;
    std::string signature;
  };
  // Waits until at least `n` events arrived (at most `timeout`); all of them.
  std::vector<Event> wait_for(std::size_t n, std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    std::unique_lock lock(mutex_);
    cv_.wait_for(lock, timeout, [&] { return events_.size() >= n; });
    return events_;
  }

 private:
  httplib::Server server_;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::vector<Event> events_;
  int refuse_ = 0;
  int attempts_ = 0;
  Answer answer_;
};

}  // namespace im::test
