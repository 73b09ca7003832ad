#include "webhook_sink.h"

#include <httplib.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "http/webhook_worker.h"

namespace im::stress {

WebhookSink::WebhookSink(std::string secret, std::uint32_t refuse_one_in, std::uint64_t seed)
    : secret_(std::move(secret)),
      refuse_one_in_(refuse_one_in),
      server_(std::make_unique<httplib::Server>()),
      rng_(seed) {}

WebhookSink::~WebhookSink() {
  server_->stop();
  if (thread_.joinable()) thread_.join();
}

bool WebhookSink::start() {
  server_->Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
    int status = 200;
    on_post(req.body, req.get_header_value("X-IM-Signature"), status);
    res.status = status;
  });
  const int port = server_->bind_to_any_port("127.0.0.1");
  if (port <= 0) return false;
  port_ = static_cast<std::uint16_t>(port);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  for (int i = 0; i < 500 && !server_->is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  return server_->is_running();
}

std::string WebhookSink::url() const {
  return "http://127.0.0.1:" + std::to_string(port_) + "/hook";
}

void WebhookSink::on_post(const std::string& body, const std::string& signature, int& status) {
  std::lock_guard lock(mutex_);
  if (refuse_one_in_ > 0 && rng_() % refuse_one_in_ == 0) {
    ++refused_;
    status = 500;
    return;
  }
  ++deliveries_;
  auto problem = [&](std::string what) {
    if (problems_.size() < 20) problems_.push_back(std::move(what));
  };
  if (signature != http::WebhookWorker::signature(secret_, body))
    problem("a webhook POST with a bad signature: " + body.substr(0, 200));
  const auto event = nlohmann::json::parse(body, nullptr, false);
  if (!event.is_object() || !event.contains("event") || !event["event"].is_string() || !event.contains("id") ||
      !event["id"].is_string()) {
    problem("a webhook POST that is not an event: " + body.substr(0, 200));
    return;
  }
  const std::string id_text = event["id"].get<std::string>();
  if (id_text.empty() || id_text.size() > 20 || id_text.find_first_not_of("0123456789") != std::string::npos) {
    problem("a webhook event whose id is not decimal digits: " + body.substr(0, 200));
    return;
  }
  const auto [known, fresh_id] = bodies_.emplace(std::stoull(id_text), std::hash<std::string>{}(body));
  if (!fresh_id && known->second != std::hash<std::string>{}(body))
    problem("event id " + id_text + " delivered for two different events (an id reused?): " + body.substr(0, 200));
  const std::string type = event["event"].get<std::string>();
  if (type == "offline_push") {
    ++offline_pushes_;
    return;
  }
  if (type != "report") {
    problem("an unknown webhook event: " + body.substr(0, 200));
    return;
  }
  if (!event.contains("report_id") || !event["report_id"].is_string() || !event.contains("uid") ||
      !event["uid"].is_string() || !event.contains("payload") || !event["payload"].is_string()) {
    problem("a report event without report_id, uid or payload: " + body.substr(0, 200));
    return;
  }
  Report r;
  r.uid = event["uid"].get<std::string>();
  r.topic = event.value("topic", "");
  if (!base64_decode(event["payload"].get<std::string>(), r.payload)) {
    problem("a report event whose payload is not base64: " + body.substr(0, 200));
    return;
  }
  const std::string id = event["report_id"].get<std::string>();
  auto [it, fresh] = reports_.emplace(id, r);
  ++it->second.deliveries;
  if (!fresh && (it->second.uid != r.uid || it->second.topic != r.topic || it->second.payload != r.payload))
    problem("report_id " + id + " delivered twice with different contents");
}

std::map<std::string, WebhookSink::Report> WebhookSink::reports() {
  std::lock_guard lock(mutex_);
  return reports_;
}

std::uint64_t WebhookSink::deliveries() {
  std::lock_guard lock(mutex_);
  return deliveries_;
}

std::uint64_t WebhookSink::refused() {
  std::lock_guard lock(mutex_);
  return refused_;
}

std::uint64_t WebhookSink::offline_pushes() {
  std::lock_guard lock(mutex_);
  return offline_pushes_;
}

std::set<std::uint64_t> WebhookSink::event_ids() {
  std::lock_guard lock(mutex_);
  std::set<std::uint64_t> ids;
  for (const auto& [id, hash] : bodies_) ids.insert(id);
  return ids;
}

std::vector<std::string> WebhookSink::problems() {
  std::lock_guard lock(mutex_);
  return problems_;
}

}  // namespace im::stress
