#pragma once
// Drains the durable outbox to webhook.url: one thread, one event at a
// time, each POSTed with X-IM-Signature. The outbox has a queue per shard,
// each in id order; the worker keeps a cursor per queue (so it never walks
// deleted events again) and sends the lowest id among the queues' first
// events. A user's events are all in one queue, so they go in order.
//
// An event is deleted after a 2xx (at least once: a crash in between sends
// it again, with the same id), or dropped (logged with its id, counted): at
// once when the receiver refuses it for good (a 4xx other than 408 and 429),
// or when it still fails webhook.max_retry_s after its first failed attempt
// (that time is kept in `meta`, so a restart does not start it over). Then
// the next event goes on. Failures back off exponentially (200 ms doubling
// to 30 s, with jitter); an event in backoff holds back the ones after it.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "im/config.h"
#include "store/outbox.h"
#include "store/store.h"

namespace im::http {

class WebhookWorker {
 public:
  // `shards`: the queues to watch (those holding events at start are
  // watched too, whatever the shard count was when they were written).
  WebhookWorker(const WebhookConfig& config, store::Store& store, unsigned shards);
  ~WebhookWorker();  // stops and joins; an event in flight is retried next start
  WebhookWorker(const WebhookWorker&) = delete;
  WebhookWorker& operator=(const WebhookWorker&) = delete;

  // X-IM-Signature for `body`: "sha256=" + hex HMAC-SHA256 with `secret`.
  static std::string signature(const std::string& secret, const std::string& body);

  // What one HTTP status means for the event: 2xx delivered; a 4xx other
  // than 408 and 429 refused for good; anything else (0: no answer) failed,
  // to be retried.
  enum class Answer { kDelivered, kRefused, kFailed };
  static Answer classify(long status);

 private:
  struct Queue {
    std::uint8_t index = 0;
    std::uint64_t next_id = 0;  // every event of the queue below it is gone
    std::optional<store::OutboxEvent> head;
    bool read_now = true;  // read at once, not at the next poll
  };

  void run();
  // Every queue to watch; false when stopping.
  bool find_queues();
  // Reads the queue's first event past its cursor; false on a read error.
  bool read_head(Queue& q);
  // POSTs `event` until it is delivered or dropped, then deletes it; false
  // when stopping first.
  bool deliver(const store::OutboxEvent& event);
  bool remove(const store::OutboxEvent& event, bool marked_failing);
  // One POST; `status` is 0 when no answer came.
  Answer post(const std::string& body, long& status);
  // Sleeps up to `ms` unless stopping; false when stopping.
  bool pause(std::uint32_t ms);
  bool stopping();

  const WebhookConfig& config_;
  store::Outbox outbox_;
  const unsigned shards_;
  std::vector<Queue> queues_;
  std::uint32_t backoff_ms_;
  std::mt19937 rng_{std::random_device{}()};
  void* curl_ = nullptr;  // CURL*, reused for keep-alive
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace im::http
