#include "http/webhook_worker.h"

#include <curl/curl.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <nlohmann/json.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "auth/jwt.h"
#include "common/clock.h"
#include "common/metrics.h"

namespace im::http {
namespace {

constexpr int kIdlePollMs = 100;
constexpr std::uint32_t kBackoffFirstMs = 200;
constexpr std::uint32_t kBackoffCapMs = 30000;
constexpr int kReadErrorPauseMs = 1000;

std::size_t discard(char*, std::size_t size, std::size_t n, void*) {
  return size * n;
}

// The event's "uid", read with a SAX parser that stops once it has it (a
// report's payload, up to 44 KB, comes after it).
class UidReader : public nlohmann::json::json_sax_t {
 public:
  std::string uid;
  bool null() override { return done(); }
  bool boolean(bool) override { return done(); }
  bool number_integer(number_integer_t) override { return done(); }
  bool number_unsigned(number_unsigned_t) override { return done(); }
  bool number_float(number_float_t, const string_t&) override { return done(); }
  bool string(string_t& v) override {
    if (depth_ == 1 && in_uid_) {
      uid = v;
      return false;  // found: stop
    }
    return done();
  }
  bool binary(binary_t&) override { return done(); }
  bool start_object(std::size_t) override {
    ++depth_;
    in_uid_ = false;
    return true;
  }
  bool key(string_t& k) override {
    in_uid_ = depth_ == 1 && k == "uid";
    return true;
  }
  bool end_object() override {
    --depth_;
    return done();
  }
  bool start_array(std::size_t) override {
    ++depth_;
    in_uid_ = false;
    return true;
  }
  bool end_array() override {
    --depth_;
    return done();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  bool done() {
    in_uid_ = false;
    return true;
  }
  int depth_ = 0;
  bool in_uid_ = false;
};

std::string uid_of(const std::string& body) {
  UidReader reader;
  nlohmann::json::sax_parse(body, &reader);
  return std::move(reader.uid);
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

std::size_t WebhookWorker::lane_of(std::string_view uid, std::size_t lanes) {
  std::uint64_t h = 14695981039346656037ull;  // FNV-1a
  for (unsigned char c : uid) h = (h ^ c) * 1099511628211ull;
  return lanes == 0 ? 0 : static_cast<std::size_t>(h % lanes);
}

WebhookWorker::WebhookWorker(const WebhookConfig& config, store::Store& store, unsigned shards,
                             store::Outbox::Writer writer)
    : config_(config),
      outbox_(store, std::move(writer)),
      shards_(shards),
      lanes_(std::max<std::uint32_t>(1, config.concurrency)) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  (void)curl_ready;
  multi_ = curl_multi_init();
  for (Lane& lane : lanes_) {
    lane.easy = curl_easy_init();
    lane.backoff_ms = kBackoffFirstMs;
  }
  const bool ready = multi_ && std::all_of(lanes_.begin(), lanes_.end(), [](const Lane& l) { return l.easy; });
  if (!ready) {
    for (Lane& lane : lanes_) curl_easy_cleanup(static_cast<CURL*>(lane.easy));
    curl_multi_cleanup(static_cast<CURLM*>(multi_));
    throw std::runtime_error("webhook: libcurl cannot make its handles");
  }
  thread_ = std::thread([this] { run(); });
}

WebhookWorker::~WebhookWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  if (multi_) curl_multi_wakeup(static_cast<CURLM*>(multi_));
  thread_.join();
  for (Lane& lane : lanes_) {
    if (lane.in_flight) curl_multi_remove_handle(static_cast<CURLM*>(multi_), static_cast<CURL*>(lane.easy));
    curl_easy_cleanup(static_cast<CURL*>(lane.easy));
    curl_slist_free_all(static_cast<curl_slist*>(lane.headers));
  }
  curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

bool WebhookWorker::stopping() {
  std::lock_guard lock(mutex_);
  return stopping_;
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
      if (stopping()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(kReadErrorPauseMs));
      continue;
    }
    if (!*found) break;
    watched[**found] = true;
    from = **found + 1u;
  }
  for (unsigned i = 0; i < 256; ++i) {
    if (!watched[i]) continue;
    Queue q;
    q.index = static_cast<std::uint8_t>(i);
    q.parked.resize(lanes_.size());
    for (;;) {
      auto last = outbox_.last_id(q.index);
      if (last) {
        q.old_end = last->value_or(0);
        break;
      }
      spdlog::error("webhook: cannot read the outbox: {}", last.error().message);
      if (stopping()) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(kReadErrorPauseMs));
    }
    queues_.push_back(std::move(q));
  }
  // Events queued before this start are "old" only when the shard count
  // changed since they were written (a user's older events may then sit in
  // another queue): until they are all delivered, every event goes
  // strictly lowest id first and no lane is parked.
  for (;;) {
    auto previous = outbox_.shard_count();
    if (previous) {
      old_mode_ = previous->value_or(0) != shards_;
      break;
    }
    spdlog::error("webhook: cannot read the outbox: {}", previous.error().message);
    if (stopping()) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(kReadErrorPauseMs));
  }
  if (!old_mode_) {
    for (Queue& q : queues_) q.old_end = 0;
  } else {
    spdlog::info("webhook: the shard count changed: the events queued before this start go first, by id");
  }
  leave_old_mode();
  return true;
}

bool WebhookWorker::is_old(const store::OutboxEvent& e) const {
  for (const Queue& q : queues_)
    if (q.index == e.queue) return q.old_end != 0 && e.id <= q.old_end;
  return false;
}

void WebhookWorker::leave_old_mode() {
  if (old_mode_) {
    if (barrier() != UINT64_MAX) return;
    for (const Queue& q : queues_)
      for (const auto& a : q.ahead)
        if (is_old(a.event)) return;
    for (const Lane& lane : lanes_)
      for (const auto& e : lane.events)
        if (is_old(e)) return;
  }
  // Every old event is delivered (or there were none): this shard count is
  // the queues' from now on.
  if (auto written = outbox_.set_shard_count(shards_); !written) {
    spdlog::error("webhook: cannot record the shard count: {}", written.error().message);
    return;  // tried again on the next pass
  }
  old_mode_ = false;
  shards_recorded_ = true;
  for (Queue& q : queues_) q.old_end = 0;
}

bool WebhookWorker::read_failed(Queue& q, const Error& e) {
  spdlog::error("webhook: cannot read the outbox: {}", e.message);
  q.read_retry_at = Clock::now() + std::chrono::milliseconds(kReadErrorPauseMs);
  return false;
}

bool WebhookWorker::read_ahead(Queue& q) {
  q.read_now = false;
  std::optional<std::uint64_t> last;
  auto read = outbox_.read(q.index, q.next_id, UINT64_MAX, [&](store::OutboxEvent&& e) {
    if (q.ahead.size() >= kAheadDepth) return false;
    last = e.id;
    const std::size_t lane = lane_of(uid_of(e.body), lanes_.size());
    if (!q.parked[lane]) q.ahead.push_back({std::move(e), lane});
    return true;
  });
  if (last) q.next_id = *last + 1;
  if (!read) return read_failed(q, read.error());
  return true;
}

void WebhookWorker::park_full_lanes(Queue& q) {
  // The read-ahead is too full to read on: the events in it that wait for
  // a full lane are let go (read again once that lane has room), so the
  // queue reads on and other users' events keep going. Not while old
  // events are pending: they go strictly in order.
  if (old_mode_) return;
  std::vector<bool> park(lanes_.size(), false);
  bool any = false;
  for (const auto& a : q.ahead)
    if (lanes_[a.lane].events.size() >= kLaneDepth) any = park[a.lane] = true;
  if (!any) return;
  std::deque<Queue::Ahead> kept;
  for (auto& a : q.ahead) {
    if (!park[a.lane]) {
      kept.push_back(std::move(a));
    } else if (!q.parked[a.lane]) {
      q.parked[a.lane] = a.event.id;  // the read-ahead is in id order: the lane's first one here
    }
  }
  q.ahead = std::move(kept);
}

void WebhookWorker::unpark() {
  if (old_mode_) return;  // nothing is parked then
  for (Queue& q : queues_) {
    if (q.read_retry_at > Clock::now()) continue;
    for (std::size_t l = 0; l < lanes_.size(); ++l) {
      auto& from = q.parked[l];
      Lane& lane = lanes_[l];
      if (!from || lane.events.size() >= kLaneDepth) continue;
      std::size_t walked = 0;
      std::optional<std::uint64_t> resume;
      auto read = outbox_.read(q.index, *from, q.next_id, [&](store::OutboxEvent&& e) {
        if (lane.events.size() >= kLaneDepth || ++walked > kRescanKeys) {
          resume = e.id;
          return false;
        }
        const std::uint64_t id = e.id;
        if (lane_of(uid_of(e.body), lanes_.size()) == l) lane.events.push_back(std::move(e));
        from = id + 1;  // what was walked is not walked again, even if the read then fails
        return true;
      });
      if (!read) {
        (void)read_failed(q, read.error());
        break;
      }
      from = resume;  // none: every parked event is back, the lane goes on from the read-ahead
    }
  }
}

std::uint64_t WebhookWorker::barrier() const {
  std::uint64_t b = UINT64_MAX;
  for (const Queue& q : queues_)
    if (q.old_end != 0 && q.next_id <= q.old_end) b = std::min(b, q.next_id);
  return b;
}

void WebhookWorker::hand_out() {
  // A merge of the queues' read-ahead by id, below the barrier. An event
  // whose lane is full stays, and so does every later one of that lane (a
  // user's events are all in one lane, so none passes an earlier one of
  // the same user).
  const std::uint64_t below = barrier();
  std::vector<bool> blocked(lanes_.size(), false);
  std::vector<std::size_t> pos(queues_.size(), 0);
  for (;;) {
    std::size_t next = queues_.size();
    for (std::size_t i = 0; i < queues_.size(); ++i) {
      const Queue& q = queues_[i];
      if (pos[i] < q.ahead.size() &&
          (next == queues_.size() || q.ahead[pos[i]].event.id < queues_[next].ahead[pos[next]].event.id))
        next = i;
    }
    if (next == queues_.size()) return;
    Queue& q = queues_[next];
    const auto it = q.ahead.begin() + static_cast<std::ptrdiff_t>(pos[next]);
    if (it->event.id >= below) return;  // an older event may still be unread
    Lane& lane = lanes_[it->lane];
    if (blocked[it->lane] || lane.events.size() >= kLaneDepth) {
      blocked[it->lane] = true;
      ++pos[next];
      continue;
    }
    lane.events.push_back(std::move(it->event));
    q.ahead.erase(it);
    if (q.ahead.size() <= kAheadDepth / 2) q.read_now = true;
  }
}

void WebhookWorker::start_due() {
  const auto now = Clock::now();
  for (Lane& lane : lanes_) {
    if (lane.in_flight || lane.events.empty() || lane.retry_at > now) continue;
    if (lane.delete_pending) {
      done(lane);
    } else {
      start(lane);
    }
  }
}

void WebhookWorker::start(Lane& lane) {
  const store::OutboxEvent& event = lane.events.front();
  if (!lane.checked) {
    lane.checked = true;
    lane.marked = false;
    lane.failing_since.reset();
    if (auto since = outbox_.failing_since(event); since) {
      lane.failing_since = *since;
      lane.marked = since->has_value();
    } else {
      spdlog::error("webhook: cannot read when event {} first failed: {}", event.id, since.error().message);
      lane.marked = true;  // unknown: its record, if any, is deleted with it
    }
  }
  CURL* curl = static_cast<CURL*>(lane.easy);
  const std::string sig = "X-IM-Signature: " + signature(config_.secret, event.body);
  curl_slist_free_all(static_cast<curl_slist*>(lane.headers));
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  headers = curl_slist_append(headers, sig.c_str());
  lane.headers = headers;
  curl_easy_setopt(curl, CURLOPT_URL, config_.url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, event.body.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(event.body.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(config_.timeout_ms));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(curl, CURLOPT_PRIVATE, &lane);
  if (curl_multi_add_handle(static_cast<CURLM*>(multi_), curl) != CURLM_OK) {
    finished(lane, 0, "cannot start the request");
    return;
  }
  lane.in_flight = true;
}

void WebhookWorker::finished(Lane& lane, long status, const char* error) {
  auto& m = metrics::get();
  const store::OutboxEvent& event = lane.events.front();
  const Answer answer = error ? Answer::kFailed : classify(status);
  if (error) {
    spdlog::warn("webhook: event {}: {}", event.id, error);
  } else if (answer != Answer::kDelivered) {
    spdlog::warn("webhook: {} answered {} to event {}", config_.url, status, event.id);
  }
  if (answer == Answer::kDelivered) {
    m.webhook_deliveries.inc();
    lane.backoff_ms = kBackoffFirstMs;
    return done(lane);
  }
  if (answer == Answer::kRefused) {
    m.webhook_dropped_refused.inc();
    lane.backoff_ms = kBackoffFirstMs;  // the receiver answers: no reason to wait before the next
    spdlog::error("webhook: event {} dropped: {} refused it with {}", event.id, config_.url, status);
    return done(lane);
  }
  m.webhook_failures.inc();
  const std::int64_t now = wall_ms();
  if (!lane.failing_since) {
    lane.failing_since = now;
    if (auto written = outbox_.mark_failing(event, now); written) {
      lane.marked = true;
    } else {
      spdlog::warn("webhook: cannot record when event {} first failed: {}", event.id, written.error().message);
    }
  }
  const std::int64_t deadline = *lane.failing_since + std::int64_t{config_.max_retry_s} * 1000;
  if (now >= deadline) {
    m.webhook_dropped_expired.inc();
    lane.backoff_ms = kBackoffFirstMs;  // the next event starts afresh
    spdlog::error("webhook: event {} dropped: still failing {} s after its first failed attempt", event.id,
                  (now - *lane.failing_since) / 1000);
    return done(lane);
  }
  std::uint32_t wait = lane.backoff_ms / 2 + static_cast<std::uint32_t>(rng_() % (lane.backoff_ms / 2 + 1));
  lane.backoff_ms = std::min(lane.backoff_ms * 2, kBackoffCapMs);
  // The last attempt comes at the deadline, not up to a backoff past it.
  wait = static_cast<std::uint32_t>(std::min<std::int64_t>(wait, deadline - now));
  lane.retry_at = Clock::now() + std::chrono::milliseconds(wait);
}

void WebhookWorker::done(Lane& lane) {
  const store::OutboxEvent& event = lane.events.front();
  if (auto removed = outbox_.remove(event, lane.marked); !removed) {
    // Not sent again meanwhile; the lane waits for the delete.
    metrics::get().store_write_errors.inc();
    spdlog::error("webhook: cannot delete event {}: {}", event.id, removed.error().message);
    lane.delete_pending = true;
    lane.retry_at = Clock::now() + std::chrono::milliseconds(kReadErrorPauseMs);
    return;
  }
  lane.events.pop_front();
  lane.delete_pending = false;
  lane.checked = false;
  lane.retry_at = Clock::time_point{};
}

int WebhookWorker::wait_ms(int cap) const {
  const auto now = Clock::now();
  auto wait = std::chrono::duration<double, std::milli>(cap);
  auto until = [&](Clock::time_point t) {
    wait = std::min(wait, std::max(std::chrono::duration<double, std::milli>(t - now),
                                   std::chrono::duration<double, std::milli>(0)));
  };
  for (const Lane& lane : lanes_)
    if (!lane.in_flight && !lane.events.empty()) until(lane.retry_at);
  for (const Queue& q : queues_)
    if (q.read_now) until(q.read_retry_at);
  return static_cast<int>(std::ceil(wait.count()));  // rounded up: no spinning through the last fraction
}

void WebhookWorker::run() {
  if (!find_queues()) return;
  CURLM* multi = static_cast<CURLM*>(multi_);
  // A queue whose read-ahead runs low is read again at once; an empty one
  // is looked at again at most every kIdlePollMs; one that failed to read,
  // after kReadErrorPauseMs.
  auto last_poll = Clock::time_point{};
  while (!stopping()) {
    const auto now = Clock::now();
    const bool poll = now - last_poll >= std::chrono::milliseconds(kIdlePollMs);
    if (poll) last_poll = now;
    for (Queue& q : queues_)
      if (q.ahead.size() <= kAheadDepth / 2 && (poll || q.read_now) && q.read_retry_at <= now) (void)read_ahead(q);
    unpark();
    hand_out();
    for (Queue& q : queues_) {
      if (q.ahead.size() <= kAheadDepth / 2) continue;
      park_full_lanes(q);
      if (q.ahead.size() <= kAheadDepth / 2) q.read_now = true;
    }
    if ((old_mode_ || !shards_recorded_) && poll) leave_old_mode();  // a failed write is retried every kIdlePollMs
    start_due();
    int running = 0;
    if (const CURLMcode rc = curl_multi_perform(multi, &running); rc != CURLM_OK)
      spdlog::error("webhook: curl_multi_perform: {}", curl_multi_strerror(rc));
    int left = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &left)) {
      if (msg->msg != CURLMSG_DONE) continue;
      CURL* easy = msg->easy_handle;
      const CURLcode rc = msg->data.result;
      Lane* lane = nullptr;
      curl_easy_getinfo(easy, CURLINFO_PRIVATE, reinterpret_cast<char**>(&lane));
      long status = 0;
      curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
      curl_multi_remove_handle(multi, easy);
      lane->in_flight = false;
      finished(*lane, rc == CURLE_OK ? status : 0, rc == CURLE_OK ? nullptr : curl_easy_strerror(rc));
    }
    // Work that can start at once: no sleep (a finished POST frees its
    // lane; a drained read-ahead is read again).
    const auto t = Clock::now();
    bool ready = false;
    for (const Queue& q : queues_) ready = ready || (q.read_now && q.read_retry_at <= t);
    for (const Lane& lane : lanes_)
      ready = ready || (!lane.in_flight && !lane.events.empty() && lane.retry_at <= t);
    if (ready) continue;
    int fds = 0;
    if (const CURLMcode rc = curl_multi_poll(multi, nullptr, 0, wait_ms(kIdlePollMs), &fds); rc != CURLM_OK) {
      spdlog::error("webhook: curl_multi_poll: {}", curl_multi_strerror(rc));
      std::this_thread::sleep_for(std::chrono::milliseconds(kIdlePollMs));
    }
  }
}

}  // namespace im::http
