#include "http/webhook_worker.h"

#include <curl/curl.h>

#include <algorithm>
#include <random>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "auth/jwt.h"
#include "common/clock.h"
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

WebhookWorker::Answer WebhookWorker::classify(long status) {
  if (status >= 200 && status <= 299) return Answer::kDelivered;
  if (status >= 400 && status <= 499 && status != 408 && status != 429) return Answer::kRefused;
  return Answer::kFailed;
}

WebhookWorker::WebhookWorker(const WebhookConfig& config, store::Store& store, unsigned shards)
    : config_(config), outbox_(store), shards_(shards), backoff_ms_(kBackoffFirstMs) {
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

bool WebhookWorker::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
}

WebhookWorker::Answer WebhookWorker::post(const std::string& body, long& status) {
  status = 0;
  CURL* curl = static_cast<CURL*>(curl_);
  if (!curl) return Answer::kFailed;
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
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    spdlog::warn("webhook: {}", curl_easy_strerror(rc));
    status = 0;
    return Answer::kFailed;
  }
  const Answer answer = classify(status);
  if (answer != Answer::kDelivered) spdlog::warn("webhook: {} answered {}", config_.url, status);
  return answer;
}

bool WebhookWorker::find_queues() {
  // The queues of this run's shards, and any other holding events (written
  // with another shard count).
  std::vector<bool> watched(256, false);
  for (unsigned i = 0; i < shards_ && i < 256; ++i) watched[i] = true;
  for (unsigned from = 0; from < 256;) {
    auto found = outbox_.next_queue(from);
    if (!found) {
      spdlog::error("webhook: cannot read the outbox: {}", found.error().message);
      if (!pause(kBackoffCapMs)) return false;
      continue;
    }
    if (!*found) break;
    watched[**found] = true;
    from = **found + 1u;
  }
  for (unsigned i = 0; i < 256; ++i) {
    if (!watched[i]) continue;
    queues_.emplace_back();
    queues_.back().index = static_cast<std::uint8_t>(i);
  }
  return true;
}

bool WebhookWorker::read_head(Queue& q) {
  q.read_now = false;
  auto first = outbox_.first(q.index, q.next_id);
  if (!first) {
    spdlog::error("webhook: cannot read the outbox: {}", first.error().message);
    q.read_now = true;
    return false;
  }
  q.head = std::move(*first);
  return true;
}

void WebhookWorker::run() {
  if (!find_queues()) return;
  // A queue that just sent its first event is read again at once; an empty
  // one is looked at again at most every kIdlePollMs.
  auto last_poll = std::chrono::steady_clock::time_point{};
  for (;;) {
    if (stopping()) return;
    const auto now = std::chrono::steady_clock::now();
    const bool poll = now - last_poll >= std::chrono::milliseconds(kIdlePollMs);
    if (poll) last_poll = now;
    bool read = true;
    for (Queue& q : queues_)
      if (!q.head && (poll || q.read_now)) read = read_head(q) && read;
    if (!read && !pause(kBackoffCapMs)) return;
    // The lowest id first: events written before a restart (in any queue)
    // go before the ones written since.
    Queue* next = nullptr;
    for (Queue& q : queues_)
      if (q.head && (!next || q.head->id < next->head->id)) next = &q;
    if (!next) {
      if (!pause(kIdlePollMs)) return;
      continue;
    }
    if (!deliver(*next->head)) return;
    next->next_id = next->head->id + 1;
    next->head.reset();
    next->read_now = true;
  }
}

bool WebhookWorker::deliver(const store::OutboxEvent& event) {
  auto& m = metrics::get();
  std::optional<std::int64_t> failing_since;
  if (auto since = outbox_.failing_since(event); since) {
    failing_since = *since;
  } else {
    spdlog::error("webhook: cannot read when event {} first failed: {}", event.id, since.error().message);
  }
  bool marked = failing_since.has_value();
  const std::int64_t max_retry_ms = std::int64_t{config_.max_retry_s} * 1000;
  for (;;) {
    long status = 0;
    const Answer answer = post(event.body, status);
    if (answer == Answer::kDelivered) {
      backoff_ms_ = kBackoffFirstMs;
      m.webhook_deliveries.inc();
      return remove(event, marked);
    }
    if (answer == Answer::kRefused) {
      backoff_ms_ = kBackoffFirstMs;  // the receiver answers: no reason to wait before the next
      m.webhook_dropped_refused.inc();
      spdlog::error("webhook: event {} dropped: {} refused it with {}", event.id, config_.url, status);
      return remove(event, marked);
    }
    m.webhook_failures.inc();
    const std::int64_t now = wall_ms();
    if (!failing_since) {
      failing_since = now;
      if (auto written = outbox_.mark_failing(event, now); written) {
        marked = true;
      } else {
        spdlog::warn("webhook: cannot record when event {} first failed: {}", event.id, written.error().message);
      }
    }
    const std::int64_t deadline = *failing_since + max_retry_ms;
    if (now >= deadline) {
      m.webhook_dropped_expired.inc();
      spdlog::error("webhook: event {} dropped: still failing {} s after its first failed attempt", event.id,
                    (now - *failing_since) / 1000);
      return remove(event, marked);
    }
    std::uint32_t wait = backoff_ms_ / 2 + static_cast<std::uint32_t>(rng_() % (backoff_ms_ / 2 + 1));
    backoff_ms_ = std::min(backoff_ms_ * 2, kBackoffCapMs);
    // The last attempt comes at the deadline, not up to a backoff past it.
    wait = static_cast<std::uint32_t>(std::min<std::int64_t>(wait, deadline - now));
    if (!pause(wait)) return false;
  }
}

bool WebhookWorker::remove(const store::OutboxEvent& event, bool marked_failing) {
  for (;;) {
    auto removed = outbox_.remove(event, marked_failing);
    if (removed) return true;
    spdlog::error("webhook: cannot delete event {}: {}", event.id, removed.error().message);
    if (!pause(kBackoffCapMs)) return false;  // sent again at the next start
  }
}

}  // namespace im::http
