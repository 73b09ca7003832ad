#pragma once
// SENDs under way on the sender's shard, by (from, client_msg_id). A retry
// that arrives while its original is still being stored waits for the
// original's answer instead of storing the message twice; the waiting is
// bounded in count (kMaxParked per SEND) and in time (answered UNAVAILABLE
// after kMaxWait, while the original's entry stays so later retries still
// wait for it rather than store a copy).
//
// Runs on its shard's thread only.

#include <chrono>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/send_job.h"

namespace im::core {

class SendDedupe {
 public:
  static constexpr std::size_t kMaxParked = 16;
  static constexpr std::chrono::seconds kMaxWait{5};

  enum class Admit { kFirst, kParked, kRefused };
  // kFirst: no SEND with this id is under way: the caller stores it (and
  // must call finish). kParked: it waits for the original. kRefused: too
  // many retries wait already; the caller answers now.
  Admit admit(const std::shared_ptr<SendJob>& job);
  // The original has its answer: the retries that waited on it (to be
  // answered as duplicates), and the id is forgotten.
  std::vector<std::shared_ptr<SendJob>> finish(const SendJob& original);
  // The jobs (originals and retries) not answered after kMaxWait.
  std::vector<std::shared_ptr<SendJob>> overdue(std::chrono::steady_clock::time_point now);
  bool empty() const { return inflight_.empty(); }

 private:
  struct Entry {
    std::shared_ptr<SendJob> original;
    std::vector<std::shared_ptr<SendJob>> parked;
  };
  static std::string key_of(const SendJob& job);
  std::unordered_map<std::string, Entry> inflight_;
};

}  // namespace im::core
