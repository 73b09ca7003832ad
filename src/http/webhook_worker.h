#pragma once
// Drains the durable outbox to webhook.url: one thread, events in outbox
// order (so in order per user), each POSTed with X-IM-Signature until a 2xx
// answers, then deleted. Failures back off exponentially (200 ms doubling to
// 30 s, with jitter). At least once: an event is deleted only after its 2xx,
// so a crash between the two sends it again, with the same id.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>

#include "im/config.h"
#include "store/outbox.h"
#include "store/store.h"

namespace im::http {

class WebhookWorker {
 public:
  WebhookWorker(const WebhookConfig& config, store::Store& store);
  ~WebhookWorker();  // stops and joins; an event in flight is retried next start
  WebhookWorker(const WebhookWorker&) = delete;
  WebhookWorker& operator=(const WebhookWorker&) = delete;

  // X-IM-Signature for `body`: "sha256=" + hex HMAC-SHA256 with `secret`.
  static std::string signature(const std::string& secret, const std::string& body);

 private:
  void run();
  // One POST; true when the receiver answered 2xx.
  bool post(const std::string& body);
  // Sleeps up to `ms` unless stopping; false when stopping.
  bool pause(std::uint32_t ms);

  const WebhookConfig& config_;
  store::Outbox outbox_;
  void* curl_ = nullptr;  // CURL*, reused for keep-alive
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace im::http
