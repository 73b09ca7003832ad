#pragma once
// The moving parts of a group fan-out (core/fanout_plan.h has the rules):
// one chain on its way through the shards, and start-up recovery's tally.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "core/send_job.h"
#include "proto/im.pb.h"
#include "store/records.h"

namespace im::core {

struct FanoutChain {
  std::shared_ptr<const v1::Message> msg;
  store::FanoutKey key;  // the group record
  std::uint32_t index = 0;
  std::vector<std::string> uids;
  std::shared_ptr<SendJob> job;  // the sender's SEND, when uids[0] is its sender
  // A failed slice is retried (the record keeps it safe meanwhile); at
  // start-up it is counted instead, and the record kept for the next start.
  bool retry = true;
  // Once the last slice is durable (or, with retry off, one failed).
  std::function<void(bool ok)> done;
};

// Start-up recovery: replays still running, and failures. Starts at one
// (the scan that posts the replays). Thread safe.
struct RecoveryTally {
  std::atomic<std::size_t> pending{1};
  std::atomic<std::size_t> failed{0};
  std::promise<void> all_done;

  void add() { pending.fetch_add(1); }
  void finish(bool ok) {
    if (!ok) failed.fetch_add(1);
    if (pending.fetch_sub(1) == 1) all_done.set_value();
  }
};

}  // namespace im::core
