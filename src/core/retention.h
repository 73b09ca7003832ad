#pragma once
// Retention in the background: inbox rows older than
// storage.inbox_retention_days and history rows older than
// storage.history_retention_days are deleted once an hour (and a minute after
// start), never the newest row of an inbox or a conversation (such a row of
// a recalled or edited message is written changed); a recalled or edited
// message's `changes` row a day after its inbox copies expired.
// Dedupe rows expire in RocksDB compaction (src/store/store.cpp). Own
// thread; never on the message path.

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>

#include "core/changed_messages.h"
#include "im/config.h"
#include "store/store.h"

namespace im::core {

class Retention {
 public:
  Retention(const StorageConfig& config, store::Store& store, ChangedMessages& changes);
  ~Retention();
  // One pass now (tests and the thread); returns the rows deleted.
  std::size_t run_once(std::int64_t now_ms);

 private:
  void expire_changes(std::int64_t cutoff_ms);

  const StorageConfig& config_;
  store::Store& store_;
  ChangedMessages& changes_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace im::core
