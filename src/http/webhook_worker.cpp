#include "http/webhook_worker.h"

#include <curl/curl.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "auth/jwt.h"
#include "common/metrics.h"

namespace im::http {
namespace {

constexpr std::uint32_t kIdlePollMs = 100;
constexpr std::uint32_t kBackoffFirstMs = 200;
constexpr std::uint32_t kBackoffCapMs = 30000;

std::size_t discard(char*, std::size_t size, std::size_t n, void*) {
  return size * n;
}

}  // namespace

std::string WebhookWorker::signature(const std::string& secret, const std::string& body) {
  std::string out = "sha256=";
  for (unsigned char c : hmac_sha256(secret, body)) out += fmt::format("{:02x}", c);
  return out;
}

WebhookWorker::WebhookWorker(const WebhookConfig& config, store::Store& store) : config_(config), outbox_(store) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)curl_ready;
  curl_ = curl_easy_init();
  thread_ = std::thread([this] { run(); });
}

WebhookWorker::~WebhookWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  curl_easy_cleanup(static_cast<CURL*>(curl_));
}

bool WebhookWorker::pause(std::uint32_t ms) {
  std::unique_lock lock(mutex_);
  return !wake_.wait_for(lock, std::chrono::milliseconds(ms), [this] { return stopping_; });
}

bool WebhookWorker::post(const std::string& body) {
  CURL* curl = static_cast<CURL*>(curl_);
  if (!curl) return false;
  const std::string sig = "X-IM-Signature: " + signature(config_.secret, body);
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, sig.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, config_.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    spdlog::warn("webhook: {}", curl_easy_strerror(rc));
    return false;
  }
  if (status < 200 || status > 299) {
    spdlog::warn("webhook: {} answered {}", config_.url, status);
    return false;
  }
  return true;
}

void WebhookWorker::run() {
  std::mt19937 rng{std::random_device{}()};
  std::uint32_t backoff = kBackoffFirstMs;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
    }
    // Always the oldest event: shards commit events in their own order, so
    // a lower id may become visible after a higher one; a user's events come
    // from one shard, in id order, so per-user order holds.
    auto oldest = outbox_.oldest();
    if (!oldest) {
      spdlog::error("webhook: cannot read the outbox: {}", oldest.error().message);
      if (!pause(kBackoffCapMs)) return;
      continue;
    }
    if (!*oldest) {
      if (!pause(kIdlePollMs)) return;
      continue;
    }
    const store::OutboxEvent& event = **oldest;
    if (!post(event.body)) {
      metrics::get().webhook_failures.inc();
      const std::uint32_t wait = backoff / 2 + static_cast<std::uint32_t>(rng() % (backoff / 2 + 1));
      backoff = std::min(backoff * 2, kBackoffCapMs);
      if (!pause(wait)) return;
      continue;
    }
    backoff = kBackoffFirstMs;
    if (auto written = outbox_.remove(event.id); !written) {
      spdlog::error("webhook: cannot drop a delivered event: {}", written.error().message);
      if (!pause(kBackoffCapMs)) return;
      continue;
    }
    metrics::get().webhook_deliveries.inc();
    metrics::get().outbox_depth.add(-1);
  }
}

}  // namespace im::http
