#pragma once
// Drains the durable outbox to webhook.url: one thread driving up to
// webhook.concurrency POSTs at once over libcurl's multi interface, each
// with X-IM-Signature. The outbox has a queue per shard, each in id order;
// the worker keeps a cursor per queue (so it never walks deleted events
// again) and reads up to kAheadDepth events ahead of it. Events are handed
// to lanes: a lane is one connection delivering its events one at a time,
// in the order handed out, and a user's events all go to one lane (by a
// hash of the uid), so each user's arrive in order while other users' go on
// beside them.
//
// Order per user across queues: with one shard count a user's events are
// all in its shard's queue; after a restart with another shard count its
// older events may sit in another queue. So then (the count is kept in the
// store) the events present at start ("old": up to each queue's last id
// then) are handed out strictly lowest id first over all queues (no event
// passes an old one not yet read, no lane is parked), and once they are all
// delivered each queue goes at its own pace and the new count is recorded.
//
// A lane whose event fails backs off (200 ms doubling to 30 s, with
// jitter) and holds back only the events after it in that lane. Its later
// events are not kept in memory: once a queue's read-ahead is too full to
// read on (over half of kAheadDepth), the lanes its events wait for, if
// full, are "parked" in that queue
// (their events there are skipped, the first skipped id remembered) and
// read again from it once the lane has room, so other users' events keep
// flowing (not while old events are pending: they go strictly in order).
// Memory: kLaneDepth events per lane, kAheadDepth per queue.
//
// An event is deleted after a 2xx (at least once: a crash in between sends
// it again, with the same id), or dropped (logged with its id, counted): at
// once when the receiver refuses it for good (a 4xx other than 408 and 429),
// or when it still fails webhook.max_retry_s after its first failed attempt
// (that time is kept in `meta`, so a restart does not start it over). A
// delete that fails is retried every second, holding back only its lane.

#include <chrono>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
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
  // `writer`: how its deletes and failure records become durable
  // (store::Outbox::Writer).
  WebhookWorker(const WebhookConfig& config, store::Store& store, unsigned shards, store::Outbox::Writer writer = {});
  ~WebhookWorker();  // stops and joins; events in flight are sent again at the next start
  WebhookWorker(const WebhookWorker&) = delete;
  WebhookWorker& operator=(const WebhookWorker&) = delete;

  // X-IM-Signature for `body`: "sha256=" + hex HMAC-SHA256 with `secret`.
  static std::string signature(const std::string& secret, const std::string& body);

  // What one HTTP status means for the event: 2xx delivered; a 4xx other
  // than 408 and 429 refused for good; anything else (0: no answer) failed,
  // to be retried.
  enum class Answer { kDelivered, kRefused, kFailed };
  static Answer classify(long status);

  // The lane (of `lanes`) delivering the events of `uid`.
  static std::size_t lane_of(std::string_view uid, std::size_t lanes);

  static constexpr std::size_t kLaneDepth = 32;   // events handed to one lane, at most
  static constexpr std::size_t kAheadDepth = 64;  // events of one queue read ahead, at most
  static constexpr std::size_t kRescanKeys = 4096;  // events walked by one re-read of a parked lane

 private:
  using Clock = std::chrono::steady_clock;

  struct Queue {
    std::uint8_t index = 0;
    std::uint64_t next_id = 0;  // every event of the queue below it is read (or gone)
    struct Ahead {
      store::OutboxEvent event;
      std::size_t lane = 0;
    };
    std::deque<Ahead> ahead;  // read, not yet handed to a lane; in id order
    bool read_now = true;     // read at once, not at the next poll
    Clock::time_point read_retry_at{};  // after a read error
    std::uint64_t old_end = 0;          // the last id present at start (0: none)
    // Per lane: that lane's events of this queue from this id up to
    // next_id are skipped (not in memory), to be read again.
    std::vector<std::optional<std::uint64_t>> parked;
  };

  struct Lane {
    void* easy = nullptr;          // CURL*, reused for keep-alive
    void* headers = nullptr;       // curl_slist* of the event in flight
    std::deque<store::OutboxEvent> events;  // the first is the one being delivered
    bool in_flight = false;
    bool delete_pending = false;  // the first event is done but its delete failed
    bool checked = false;  // the first event's failure record has been read
    std::optional<std::int64_t> failing_since;
    bool marked = false;   // the first event has a failure record
    Clock::time_point retry_at{};
    std::uint32_t backoff_ms = 0;
  };

  void run();
  // Every queue to watch; false when stopping.
  bool find_queues();
  // Reads past the queue's cursor up to kAheadDepth, skipping parked
  // lanes' events; false on a read error.
  bool read_ahead(Queue& q);
  // When every event of a full read-ahead waits for a full lane: parks
  // those lanes in `q` and empties the read-ahead.
  void park_full_lanes(Queue& q);
  // Hands parked events to lanes that have room again.
  void unpark();
  // Events below it may be handed out: every old event below it has been
  // read (UINT64_MAX once every old event has been).
  std::uint64_t barrier() const;
  bool read_failed(Queue& q, const Error& e);
  // Hands read events to their lanes, lowest id first, each while its lane
  // has room and no earlier event waits for that lane.
  void hand_out();
  // Starts the POST of each idle lane's first event whose backoff is over.
  void start_due();
  void start(Lane& lane);
  // The POST of `lane` ended with `status` (0: no answer, `error` says why).
  void finished(Lane& lane, long status, const char* error);
  // The lane's first event is done (delivered or dropped): deleted, and the
  // lane moves on.
  void done(Lane& lane);
  // Whether `e` was queued before this start and the shard count changed.
  bool is_old(const store::OutboxEvent& e) const;
  // Leaves the strict order once no old event is left, recording the
  // shard count (at start too, when there is nothing old).
  void leave_old_mode();
  // Milliseconds until the next retry or read is due (capped at `cap`).
  int wait_ms(int cap) const;
  bool stopping();

  const WebhookConfig& config_;
  store::Outbox outbox_;
  const unsigned shards_;
  std::vector<Queue> queues_;
  std::vector<Lane> lanes_;
  bool old_mode_ = false;         // see "Order per user across queues" above
  bool shards_recorded_ = false;  // the shard count is in the store
  std::mt19937 rng_{std::random_device{}()};
  void* multi_ = nullptr;  // CURLM*
  std::mutex mutex_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace im::http
