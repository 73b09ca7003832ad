#pragma once
// Retention in the background: inbox rows older than
// storage.inbox_retention_days and history rows older than
// storage.history_retention_days (held back while inboxes may still name
// them: `meta` "inbox_refs") are deleted once an hour (and a minute after
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

// Whether inbox rows are written by reference to their history rows
// (store/records.h, InboxRef): only while history is kept longer than
// inboxes, by a day at least, so that a reference never outlives its row
// (inbox rows come about in time order, not exactly: a copy written late
// sits behind newer ones).
bool inbox_rows_by_reference(const StorageConfig& config);

class Retention {
 public:
  Retention(const StorageConfig& config, store::Store& store, ChangedMessages& changes);
  ~Retention();
  // One pass now (tests and the thread); returns the rows deleted.
  std::size_t run_once(std::int64_t now_ms);

 private:
  void expire_changes(std::int64_t cutoff_ms);
  // The history cutoff, held back while inboxes may still hold references
  // written before history retention was lowered below inbox retention.
  std::int64_t history_cutoff(std::int64_t now_ms, std::int64_t inbox_cutoff);

  const StorageConfig& config_;
  store::Store& store_;
  ChangedMessages& changes_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace im::core
