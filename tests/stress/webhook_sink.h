#pragma once
// The business webhook receiver imstress runs on 127.0.0.1 (PROTOCOL 7):
// checks each POST's X-IM-Signature, keeps every `report` event by its
// report_id (the receiver's dedupe), counts `offline_push` events, and can
// refuse about one POST in N with 500 so that the server's retries run too.
// It outlives the imserver processes it serves. Thread safe.

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace im::stress {

class WebhookSink {
 public:
  struct Report {
    std::string uid;
    std::string topic;
    std::string payload;  // decoded
    int deliveries = 0;
  };

  // `refuse_one_in` 0: never refuses.
  WebhookSink(std::string secret, std::uint32_t refuse_one_in, std::uint64_t seed);
  ~WebhookSink();
  WebhookSink(const WebhookSink&) = delete;
  WebhookSink& operator=(const WebhookSink&) = delete;

  // Listens on 127.0.0.1, a free port; false when it cannot.
  bool start();
  std::string url() const;

  // Reports delivered so far, by report_id.
  std::map<std::string, Report> reports();
  std::uint64_t deliveries();
  std::uint64_t refused();
  std::uint64_t offline_pushes();
  // Every event id delivered so far.
  std::set<std::uint64_t> event_ids();
  // What a receiver must never see: a bad signature, a body that is not an
  // event, one report_id delivered with two contents, one event id used for
  // two different events. The first 20.
  std::vector<std::string> problems();

 private:
  void on_post(const std::string& body, const std::string& signature, int& status);

  std::string secret_;
  std::uint32_t refuse_one_in_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::mt19937_64 rng_;
  std::map<std::string, Report> reports_;
  std::uint64_t deliveries_ = 0;
  std::uint64_t refused_ = 0;
  std::uint64_t offline_pushes_ = 0;
  std::vector<std::string> problems_;
  // event id -> the hash of its body: a retry resends the same body, so one
  // id with two bodies means an id was reused.
  std::map<std::uint64_t, std::size_t> bodies_;
};

}  // namespace im::stress
