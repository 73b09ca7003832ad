// Shard, part two: the send path (docs/architecture.md, "A SEND"), from
// dedupe on the sender's shard, through the conversation's owner, to each
// participant's inbox row; and the one place that stages an inbox row.

#include <limits>
#include <unordered_set>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "core/fanout_chain.h"
#include "core/fanout_plan.h"
#include "core/retention.h"
#include "core/shard.h"
#include "store/keys.h"

namespace im::core {
namespace {

constexpr auto kOverdueSweep = std::chrono::seconds(1);
// Added to CoreEnv::earlier_runs_below_ms, which bounds the earlier runs'
// rows by their msg_id reservations already: a margin, no more.
constexpr std::int64_t kSlackMs = 60'000;
// A sender's window is read back this many inbox rows a turn (about 2 ms:
// the rows come at 2-3 million a second), and the read stops after
// kOldRun rows in a row older than the window (Shard::Rebuild).
constexpr std::uint64_t kRebuildSlice = 4096;
constexpr int kOldRun = 64;

std::int64_t window_ms(const Config& config) {
  return std::int64_t{config.storage.dedupe_window_s} * 1000;
}

// A row's dedupe record, as a dedupe row stores it.
store::DedupeRecord record_of(const v1::Message& m, std::uint64_t inbox_seq) {
  return {m.msg_id(), m.conv_seq(), inbox_seq, m.server_time_ms()};
}

}  // namespace

Result<std::uint64_t> Shard::stage_inbox(const std::string& uid, const v1::Message& msg, std::string_view history_conv,
                                         bool is_sender, std::shared_ptr<const SendJob> sender_job) {
  auto u = user(uid);
  if (!u) return u.error();
  v1::Message row = msg;
  // A copy written after its message was recalled or edited (a retried
  // write) is written, pushed and counted as the message now is. A read
  // that fails leaves it as sent: every answer built from the row applies
  // the change again (ChangedMessages).
  if (auto changed = env_.changes.apply(row); !changed)
    spdlog::warn("shard {}: the change of message {} could not be read: {}", index_, row.msg_id(),
                 changed.error().message);
  row.set_inbox_seq(++(*u)->inbox_next);
  touched_users_.push_back(*u);
  std::string bytes = row.SerializeAsString();
  // By reference when the history row outlives this one; the push carries
  // the message itself either way.
  if (!history_conv.empty() && msg.conv_seq() != 0 && inbox_rows_by_reference(env_.config.storage)) {
    if (!refs_recorded_) {
      // Retention's record that references exist, in the same batch (and so
      // in cluster mode's log, for a node rebuilt from it).
      commit_.batch().put_meta(store::kInboxRefsKey, store::kInboxRefsOn);
      refs_recorded_ = true;
      commit_.after_commit([this](bool ok) { refs_recorded_ = refs_recorded_ && ok; });
    }
    commit_.batch().put_inbox_ref(uid, row.inbox_seq(), history_conv, msg.conv_seq());
    ++commit_.staged().inbox_refs;
  } else {
    commit_.batch().put_inbox(uid, row.inbox_seq(), bytes);
  }
  ++commit_.staged().inbox;
  const std::string* key = users_.key_of(uid);
  if (is_sender && !msg.client_msg_id().empty()) {
    // This row is the SEND's durable dedupe record: recent_ learns it once
    // it is written, before the SendResp (on_written runs first). Without
    // room there, the record is a dedupe row in the same batch.
    bool held = false;
    if (recent_.enabled()) {
      const std::uint64_t hash = recent_.hash_of(msg.client_msg_id());
      // The batch's hashes are kept per sender (its key's address mixed
      // in): another sender's equal id is no collision.
      const std::uint64_t in_batch =
          hash ^ (static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(key)) * 0x9e3779b97f4a7c15ULL);
      held = recent_.has_room(new_sends_.size() + 1) && recent_.find(uid, hash).inbox_seq == 0 &&
             new_send_hashes_.insert(in_batch).second;
      if (held) new_sends_.push_back({key, hash, row.inbox_seq(), msg.server_time_ms()});
    }
    if (!held) {
      commit_.batch().put_dedupe(msg.from(), msg.client_msg_id(), record_of(msg, row.inbox_seq()));
      if (recent_.enabled()) metrics::get().dedupe_rows.inc();
    }
  }
  if ((*u)->book) book_rows_.push_back({*u, key, ConvBook::row_of(row)});
  pushes_.push_back({*u, std::move(bytes), std::move(sender_job)});
  if (!is_sender && row.content_type() < 10000 && env_.webhook_enabled())
    new_offline_.push_back(offline_.make(uid, row.inbox_seq(), row));
  return row.inbox_seq();
}

Result<Ok> Shard::charge_rows(const std::string& uid, std::uint64_t rows) {
  const std::uint32_t wait_ms = env_.fanout.take(uid, rows);
  if (wait_ms == 0) return Ok{};
  metrics::get().fanout_rate_limited.inc();
  Error limited = make_error(StatusCode::kRateLimited, "over limits.fanout_rows_per_second");
  limited.retry_after_ms = wait_ms;
  return limited;
}

// ---------------------------------------------------------------- sender's shard

Result<std::optional<v1::SendResp>> Shard::dedupe_hit(const SendJob& job) {
  const std::string& uid = job.msg.from();
  const std::string& client_msg_id = job.msg.client_msg_id();
  const std::int64_t now = wall_ms();
  const std::int64_t since_ms = now - window_ms(env_.config);
  auto duplicate_of = [](const store::DedupeRecord& r) {
    v1::SendResp resp;
    resp.set_msg_id(r.msg_id);
    resp.set_conv_seq(r.conv_seq);
    resp.set_inbox_seq(r.inbox_seq);
    resp.set_server_time_ms(r.time_ms);
    resp.set_duplicate(true);
    return std::optional<v1::SendResp>(resp);
  };
  if (recent_.enabled()) {
    // The sender's window is in memory (send_admitted waited for it).
    const auto found = recent_.find(uid, recent_.hash_of(client_msg_id));
    if (found.inbox_seq != 0) {
      // Only the row itself says whether the id is this one (the entry
      // holds its hash).
      auto row = sender_row(uid, found.inbox_seq);
      if (!row) return row.error();
      if (*row && (*row)->client_msg_id() == client_msg_id && (*row)->server_time_ms() >= since_ms)
        return duplicate_of(record_of(**row, found.inbox_seq));
    }
  }
  // Rows written when the memory window was full or off, by a large group's
  // message (which has no inbox row), or by an older version.
  auto stored = env_.store.get_dedupe(uid, client_msg_id);
  if (!stored) return stored.error();
  if (!*stored || (*stored)->time_ms < since_ms) return std::optional<v1::SendResp>();
  return duplicate_of(**stored);
}

Result<std::optional<v1::Message>> Shard::sender_row(const std::string& uid, std::uint64_t inbox_seq) {
  std::optional<v1::Message> found;
  auto scanned = env_.store.scan_inbox(uid, inbox_seq, inbox_seq + 1, [&](std::uint64_t, std::string_view bytes) {
    v1::Message m;
    if (m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())) && m.from() == uid) found = std::move(m);
    return false;
  });
  if (!scanned) return scanned.error();
  return found;
}

bool Shard::needs_rebuild(const std::string& uid) {
  if (!recent_.enabled()) return false;
  if (!rebuilds_.empty() && rebuilds_.count(uid)) return true;
  // A sender not held since the start: the rows of the window an earlier
  // run wrote are only in its inbox (until the window has passed them).
  // Past that window no sender is looked up here.
  const std::int64_t now = wall_ms();
  recent_.expire(now);
  if (now >= env_.earlier_runs_below_ms + kSlackMs + window_ms(env_.config)) return false;
  return !recent_.loaded(uid);
}

void Shard::wait_for_rebuild(std::shared_ptr<SendJob> job) {
  const std::string uid = job->msg.from();
  auto& r = rebuilds_[uid];
  const bool first = !r;
  if (first) {
    r = std::make_unique<Rebuild>();
    r->since_ms = wall_ms() - window_ms(env_.config);
    r->covered_ms = env_.earlier_runs_below_ms + kSlackMs;
  }
  r->waiting.push_back(std::move(job));
  if (first) asio::post(context(), [this, uid] { rebuild_step(uid); });
}

void Shard::rebuild_step(const std::string& uid) {
  auto it = rebuilds_.find(uid);
  if (it == rebuilds_.end()) return;
  auto done = rebuild_slice(uid, *it->second);
  if (done && !*done) {
    asio::post(context(), [this, uid] { rebuild_step(uid); });
    return;
  }
  auto waiting = std::move(it->second->waiting);
  rebuilds_.erase(it);
  if (done) recent_.mark_loaded(uid);
  for (auto& job : waiting) {
    if (!done) {
      finish_send(job, done.error());  // not loaded: the next SEND reads again
      continue;
    }
    // Looked up at once: an expiry now could forget the sender again.
    store_send(std::move(job));
  }
}

Result<bool> Shard::rebuild_slice(const std::string& uid, Rebuild& r) {
  struct Kept {
    std::uint64_t hash;
    std::uint64_t inbox_seq;
    std::int64_t time_ms;
  };
  std::vector<Kept> kept;  // newest first, at most the room memory has
  std::unordered_set<std::uint64_t> kept_hashes;
  const std::uint64_t pending = new_sends_.size();
  const std::uint64_t room = recent_.room() > pending ? recent_.room() - pending : 0;
  // What memory cannot hold (no room, or a hash another row holds) gets its
  // dedupe row, written before anything is answered from memory.
  store::Batch overflow(env_.store);
  std::uint64_t rows = 0;
  bool more = false;
  v1::Message m;
  auto scanned = env_.store.scan_inbox_back(uid, r.below, [&](std::uint64_t seq, std::string_view bytes) {
    if (rows == kRebuildSlice) {
      more = true;  // the next slice goes on from this row
      return false;
    }
    ++rows;
    r.below = seq;
    if (!m.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return true;
    if (m.server_time_ms() < r.since_ms) return ++r.old_run < kOldRun;
    r.old_run = 0;
    if (m.from() != uid || m.client_msg_id().empty() || m.server_time_ms() >= r.covered_ms) return true;
    const std::uint64_t hash = recent_.hash_of(m.client_msg_id());
    const std::uint64_t held = recent_.find(uid, hash).inbox_seq;
    if (held == seq) return true;  // held already (a row written or recovered since the start)
    if (kept.size() < room && held == 0 && kept_hashes.insert(hash).second) {
      kept.push_back({hash, seq, m.server_time_ms()});
      return true;
    }
    overflow.put_dedupe(uid, m.client_msg_id(), record_of(m, seq));
    return true;
  });
  metrics::get().dedupe_rebuild_rows.inc(rows);
  metrics::get().dedupe_rebuild_slices.inc();
  if (!scanned) return scanned.error();
  if (!overflow.empty()) {
    if (auto written = env_.store.write(overflow); !written) return written.error();
    metrics::get().dedupe_rows.inc(overflow.count());
  }
  // Every kept hash is free (and once among them): each is added, oldest
  // first; an older row of a later slice with one of them finds it held.
  for (auto it = kept.rbegin(); it != kept.rend(); ++it) recent_.add(uid, it->hash, it->inbox_seq, it->time_ms);
  return !more;
}

void Shard::send(std::shared_ptr<SendJob> job) {
  switch (dedupe_.admit(job)) {
    case SendDedupe::Admit::kParked:  // a retry of a SEND under way: answered with it
      arm_overdue_timer();
      return;
    case SendDedupe::Admit::kRefused: {
      Error busy = make_error(StatusCode::kUnavailable, "this message is being stored; retry later");
      busy.retry_after_ms = 1000;
      job->answer(busy);
      return;
    }
    case SendDedupe::Admit::kFirst: break;
  }
  arm_overdue_timer();
  send_admitted(std::move(job));
}

void Shard::send_admitted(std::shared_ptr<SendJob> job) {
  if (needs_rebuild(job->msg.from())) return wait_for_rebuild(std::move(job));
  store_send(std::move(job));
}

void Shard::store_send(std::shared_ptr<SendJob> job) {
  auto dup = dedupe_hit(*job);
  if (!dup) return finish_send(job, dup.error());
  if (*dup) return finish_send(job, **dup);
  // A C2C message costs its two inbox rows (one to oneself); a group's is
  // charged on the group's shard, which knows the members. The admin API
  // (no session) is not limited.
  if (job->msg.conv_type() != v1::GROUP && job->session_id != 0) {
    if (auto charged = charge_rows(job->msg.from(), job->msg.to() == job->msg.from() ? 1 : 2); !charged)
      return finish_send(job, charged.error());
  }
  auto id = clock_->next();
  if (!id) return finish_send(job, id.error());
  job->msg.set_msg_id(*id);
  job->msg.set_server_time_ms(wall_ms());
  Shard& owner = conversation_owner(env_, job->msg.conv_type(), job->msg.from(), job->msg.to());
  if (&owner == this) return stage_conversation(std::move(job));
  asio::post(owner.context(), [&owner, job = std::move(job)]() mutable { owner.stage_conversation(std::move(job)); });
}

void Shard::finish_send(const std::shared_ptr<SendJob>& job, const Result<v1::SendResp>& result) {
  job->answer(result);
  for (auto& retry : dedupe_.finish(*job)) {
    if (!result) {
      retry->answer(result);
      continue;
    }
    v1::SendResp dup = *result;
    dup.set_duplicate(true);
    retry->answer(dup);
  }
}

void Shard::answer_on_sender(const std::shared_ptr<SendJob>& job, const Result<v1::SendResp>& result) {
  Shard& sender = env_.shard_for(job->msg.from());
  if (&sender == this) return finish_send(job, result);
  asio::post(sender.context(), [&sender, job, result] { sender.finish_send(job, result); });
}

void Shard::arm_overdue_timer() {
  // A SEND whose write keeps failing (a copy or a slice retried in the
  // background) is answered UNAVAILABLE after SendDedupe::kMaxWait; its
  // retries keep waiting on it, so none stores a second copy.
  if (overdue_timer_armed_ || dedupe_.empty()) return;
  overdue_timer_armed_ = true;
  overdue_timer_.expires_after(kOverdueSweep);
  overdue_timer_.async_wait([this](const asio::error_code& ec) {
    overdue_timer_armed_ = false;
    if (ec) return;
    for (auto& job : dedupe_.overdue(std::chrono::steady_clock::now())) {
      // Not INTERNAL: the message may well be stored (its history row is);
      // a retry with the same client_msg_id learns the outcome.
      Error busy = make_error(StatusCode::kUnavailable, "the message is not stored yet; retry it");
      busy.retry_after_ms = 1000;
      job->answer(busy);
    }
    arm_overdue_timer();
  });
}

// ---------------------------------------------------------------- conversation's owner

void Shard::stage_conversation(std::shared_ptr<SendJob> job) {
  commit_.make_room();
  if (job->is_change()) settle_target(*job);
  if (job->msg.conv_type() != v1::GROUP) return stage_c2c(job);
  if (groups_.changed_in_batch(job->msg.to())) commit_.commit();
  auto g = groups_.find(job->msg.to());
  if (!g) return answer_on_sender(job, g.error());
  // A moderator's recall lifts the window and the sender rule, not
  // membership: the event is `from`'s, whose own inbox row answers it.
  if (auto access = check_access(*g, GroupActor{job->msg.from(), false}); !access)
    return answer_on_sender(job, access.error());
  std::optional<ChangePlan> change;
  if (job->is_change()) {
    auto checked = check_change(*job, *g);
    if (!checked) return answer_on_sender(job, checked.error());
    change = std::move(*checked);
  }
  const bool large = (*g)->info.large();
  if (job->session_id != 0) {
    // A large group's message is one row (PROTOCOL 9).
    if (auto charged = charge_rows(job->msg.from(), large ? 1 : (*g)->members.size()); !charged)
      return answer_on_sender(job, charged.error());
  }
  auto staged = large ? stage_large_message(job->msg, {}, job, (*g)->members.size())
                      : stage_group_message(job->msg, member_uids(**g), job);
  if (!staged) return answer_on_sender(job, staged.error());
  if (change) stage_target(*job, *change, *staged);
  commit_.schedule();
}

void Shard::stage_c2c(const std::shared_ptr<SendJob>& job) {
  v1::Message& m = job->msg;
  std::vector<std::string> participants{m.from()};
  if (m.to() != m.from()) participants.push_back(m.to());
  // Everything that can fail is read before anything is staged.
  std::optional<ChangePlan> change;
  if (job->is_change()) {
    auto checked = check_change(*job, nullptr);
    if (!checked) return answer_on_sender(job, checked.error());
    change = std::move(*checked);
  }
  for (const auto& uid : participants) {
    if (&env_.shard_for(uid) != this) continue;
    if (auto u = user(uid); !u) return answer_on_sender(job, u.error());
  }
  auto counter = convs_.get(job->conv);
  if (!counter) return answer_on_sender(job, counter.error());
  const std::string_view text = search_text_of(*job, m);
  m.set_conv_seq(convs_.assign(**counter, searchable(m, text)));
  commit_.batch().put_history(job->conv, m.conv_seq(), m.SerializeAsString(), text);
  ++commit_.staged().history;
  if (change) stage_target(*job, *change, m.conv_seq());
  // The sender is answered once every participant's inbox holds the
  // message: by the last copy written, its own or the recipient's.
  std::optional<v1::SendResp> local_resp;  // set when the sender's copy is in this batch
  bool remote_recipient = false;
  for (const auto& uid : participants) {
    const bool is_sender = uid == m.from();
    if (&env_.shard_for(uid) == this) {
      auto seq = stage_inbox(uid, m, job->conv, is_sender, is_sender ? job : nullptr);
      if (is_sender) local_resp = send_resp(m, *seq);
    } else if (!is_sender) {
      remote_recipient = true;
    }
  }
  for (const auto& uid : participants) {
    const bool is_sender = uid == m.from();
    Shard& owner = env_.shard_for(uid);
    if (&owner == this) continue;
    // Another shard writes this copy: a durable record of it goes in this
    // batch, and that shard deletes it with the row (start-up replays it).
    // It answers the sender: its own copy, or the recipient's when the
    // sender's is in this batch.
    store::FanoutKey key{job->conv, m.conv_seq(), uid};
    store::CopyRecord record{is_sender, m};
    commit_.batch().put_copy(key, record);
    commit_.after_commit([&owner, key, record, job = is_sender || local_resp ? job : nullptr, local_resp](bool ok) {
      if (!ok) return;  // the sender is told below
      asio::post(owner.context(),
                 [&owner, key, record, job, local_resp] { owner.append_copy(key, record, job, nullptr, local_resp); });
    });
  }
  if (local_resp) {
    commit_.after_commit([this, job, resp = *local_resp, remote_recipient](bool ok) {
      if (!ok) return finish_send(job, not_written("the message could not be stored"));
      if (!remote_recipient) finish_send(job, resp);
    });
  }
  if (!local_resp) {
    // The history row is what makes the message exist: if it failed, the
    // sender's shard must learn it (when it succeeded, its copy answers).
    commit_.after_commit([this, job](bool ok) {
      if (!ok) answer_on_sender(job, not_written("the message could not be stored"));
    });
  }
  commit_.schedule();
}

// ---------------------------------------------------------------- participant's shard

void Shard::retry_later(std::function<void()> again) {
  auto timer = std::make_shared<asio::steady_timer>(context(), std::chrono::milliseconds(200));
  timer->async_wait([timer, again = std::move(again)](const asio::error_code& ec) {
    if (!ec) again();
  });
}

void Shard::stage_rows(std::shared_ptr<const store::Batch> rows, std::function<void(bool)> done, int tries) {
  if (rows->refused()) {  // nothing of it is staged
    spdlog::error("shard {}: rows not staged: a range deletion the store refuses", index_);
    if (done) done(false);
    return;
  }
  commit_.make_room();
  (void)rows->for_each_row([this](const store::Row& r) { commit_.batch().add_row(r); });
  commit_.after_commit([this, rows, done = std::move(done), tries](bool ok) {
    if (ok || tries <= 1) {
      if (!ok) spdlog::error("shard {}: rows not written after {} tries", index_, kStageRowsTries);
      if (done) done(ok);
      return;
    }
    // A batch fails while the partition is unavailable (a full stream, a
    // leader election): again in a while, at most kStageRowsTries times.
    retry_later([this, rows, done, tries] { stage_rows(rows, done, tries - 1); });
  });
  commit_.schedule();
}

void Shard::append_copy(store::FanoutKey key, store::CopyRecord record, std::shared_ptr<SendJob> job,
                        std::shared_ptr<RecoveryTally> tally, std::optional<v1::SendResp> resp) {
  commit_.make_room();
  auto retry_or_count = [this, key, record, job, tally, resp] {
    if (tally) return tally->finish(false);
    // The message exists (its history row and this record are durable):
    // retry this copy rather than fail a SEND that did happen.
    retry_later([this, key, record, job, resp] { append_copy(key, record, job, nullptr, resp); });
  };
  // A read mark's copy has no history row (its key's seq is its msg_id).
  const std::string_view history_conv = record.msg.conv_seq() == key.conv_seq ? std::string_view(key.conv) : "";
  auto seq = stage_inbox(key.recipient, record.msg, history_conv, record.is_sender, record.is_sender ? job : nullptr);
  if (!seq) return retry_or_count();
  commit_.batch().del_fanout(key);
  commit_.after_commit([this, job, tally,
                        answer = record.is_sender ? send_resp(record.msg, *seq) : resp.value_or(v1::SendResp{}),
                        retry_or_count](bool ok) {
    if (!ok) return retry_or_count();
    if (job) answer_on_sender(job, answer);
    if (tally) tally->finish(true);
  });
  commit_.schedule();
}

}  // namespace im::core
