// Shard, part five: RECALL and EDIT (PROTOCOL 8.3). The event (10003 or
// 10004) travels the send path like a message; the conversation's owner
// checks the target and rewrites its history row in the event's batch, and
// each participant's shard rewrites its inbox copy of the target in the
// batch that appends the event to that inbox (DESIGN.md, "Conversations,
// receipts, recall"), so no answer returns the old body once the event is
// visible there.

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "common/metrics.h"
#include "core/conv_book.h"
#include "core/shard.h"

namespace im::core {
namespace {

constexpr std::uint32_t kRecall = 10003;
constexpr std::uint32_t kEdit = 10004;
constexpr std::uint32_t kRecalled = 10005;
// How far back an inbox is searched for the target's copy: a row of the
// same conversation more than kCopySearchSlackSeqs below the target ends
// the search (a conversation's rows reach an inbox in conv_seq order but
// for a group's sender, whose own rows come first), and at most
// kCopySearchRows rows are read (an old target in a busy inbox: a
// moderator's recall has no window). Not a time bound: msg_ids run up to a
// minute ahead of the wall clock after each restart (MsgIdClock's
// reservation), which the first version of this search tripped on.
constexpr std::uint64_t kCopySearchSlackSeqs = 16;
constexpr int kCopySearchRows = 20000;
constexpr std::size_t kLateChanges = 4096;

struct Target {
  std::uint64_t conv_seq = 0;
  std::uint64_t msg_id = 0;
};

Target target_of(const v1::Message& event) {
  if (event.content_type() == kRecall) {
    v1::MessageRecall r;
    if (r.ParseFromString(event.body())) return {r.target_conv_seq(), r.target_msg_id()};
  } else if (event.content_type() == kEdit) {
    v1::MessageEdit e;
    if (e.ParseFromString(event.body())) return {e.target_conv_seq(), e.target_msg_id()};
  }
  return {};
}

std::string batch_key(const std::string& conv, std::uint64_t seq) {
  return conv + '\0' + std::to_string(seq);
}

// The target as the event makes it: a recall leaves a tombstone (10005,
// the MessageRecall as body; ids, seqs and time kept), an edit the new body
// with its version and time.
void apply_change(v1::Message& target, const v1::Message& event) {
  if (event.content_type() == kRecall) {
    target.set_content_type(kRecalled);
    target.set_body(event.body());
    target.clear_edit_version();
    target.clear_edited_ms();
    return;
  }
  v1::MessageEdit e;
  if (!e.ParseFromString(event.body())) return;
  // Edits reach a copy in any order when writes were retried: a tombstone
  // stays one, and an older edit never replaces a newer.
  if (target.content_type() == kRecalled || target.edit_version() >= e.edit_version()) return;
  target.set_body(e.body());
  target.set_edit_version(e.edit_version());
  target.set_edited_ms(event.server_time_ms());
}

}  // namespace

Result<v1::Message> Shard::check_change(SendJob& job, const GroupState* group) {
  v1::Message& event = job.msg;
  const std::string& uid = event.from();
  auto last = convs_.committed(job.conv);
  if (!last) return last.error();
  if (job.target_seq > *last) return make_error(StatusCode::kNotFound, "no message at that conv_seq");
  auto row = env_.store.get_history(job.conv, job.target_seq);
  if (!row) return row.error();
  if (!*row) return make_error(StatusCode::kNotFound, "no message at that conv_seq (expired?)");
  v1::Message target;
  if (!target.ParseFromString(**row)) return make_error(StatusCode::kInternal, "the target does not parse");
  if (target.content_type() == kRecalled) return make_error(StatusCode::kGone, "the message was recalled");
  if (target.content_type() >= 10000) return make_error(StatusCode::kBadRequest, "the target is not a message");
  const std::int64_t age_ms = wall_ms() - target.server_time_ms();
  const auto& limits = env_.config.limits;
  if (event.content_type() == kRecall) {
    const bool owner = group && group->members.count(uid) > 0 && group->members.at(uid);
    if (!job.moderator && !owner) {
      if (target.from() != uid) return make_error(StatusCode::kForbidden, "another user's message");
      if (age_ms > std::int64_t{limits.recall_window_s} * 1000)
        return make_error(StatusCode::kExpired, "the recall window (limits.recall_window_s) has passed");
    }
    v1::MessageRecall body;
    body.set_target_conv_seq(target.conv_seq());
    body.set_target_msg_id(target.msg_id());
    body.set_by(uid);
    event.set_body(body.SerializeAsString());
  } else {
    if (target.from() != uid) return make_error(StatusCode::kForbidden, "another user's message");
    if (age_ms > std::int64_t{limits.edit_window_s} * 1000)
      return make_error(StatusCode::kExpired, "the edit window (limits.edit_window_s) has passed");
    if (target.edit_version() >= limits.max_edits)
      return make_error(StatusCode::kExpired, "the message was edited limits.max_edits times");
    v1::MessageEdit body;
    if (!body.ParseFromString(event.body())) return make_error(StatusCode::kInternal, "the edit does not parse");
    body.set_target_conv_seq(target.conv_seq());
    body.set_target_msg_id(target.msg_id());
    body.set_edit_version(target.edit_version() + 1);
    event.set_body(body.SerializeAsString());
  }
  apply_change(target, event);
  return target;
}

void Shard::settle_target(const SendJob& job) {
  if (rewritten_in_batch_.count(batch_key(job.conv, job.target_seq)) > 0) commit_.commit();
}

void Shard::stage_target(const SendJob& job, const v1::Message& target) {
  commit_.batch().put_history(job.conv, target.conv_seq(), target.SerializeAsString());
  rewritten_in_batch_.insert(batch_key(job.conv, target.conv_seq()));
}

Result<std::optional<std::pair<std::uint64_t, std::string>>> Shard::find_copy(const std::string& uid, UserState& u,
                                                                               const v1::Message& event) {
  using Found = std::optional<std::pair<std::uint64_t, std::string>>;
  const Target t = target_of(event);
  if (t.msg_id == 0) return Found();
  const std::string conv = conv_of_row(uid, event);
  // A sender gets its own row first (it leads its fan-out chain, ahead of
  // earlier messages' later slices): in the inbox of the user who changes
  // the message (its sender, but for an owner's or a moderator's recall)
  // the search does not stop early.
  const bool senders_inbox = uid == event.from();
  Found found;
  int read = 0;
  v1::Message m;
  auto scanned =
      env_.store.scan_inbox_back(uid, u.inbox_committed + 1, [&](std::uint64_t seq, std::string_view row) {
        if (++read > kCopySearchRows) return false;
        if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) return true;
        if (m.msg_id() == t.msg_id && m.conv_seq() == t.conv_seq) {
          apply_change(m, event);
          found.emplace(seq, m.SerializeAsString());
          return false;
        }
        return senders_inbox || m.conv_seq() + kCopySearchSlackSeqs >= t.conv_seq || m.conv_seq() == 0 ||
               conv_of_row(uid, m) != conv;
      });
  if (!scanned) return scanned.error();
  if (!found && read > kCopySearchRows) {
    metrics::get().changed_copies_missed.inc();
    spdlog::warn("shard {}: the copy of message {} in {}'s inbox is more than {} rows back: left as it was", index_,
                 t.msg_id, uid, kCopySearchRows);
  }
  return found;
}

Result<Ok> Shard::prepare_inbox(const std::string& uid, const v1::Message& msg) {
  auto u = user(uid);
  if (!u) return u.error();
  if (msg.content_type() != kRecall && msg.content_type() != kEdit) return Ok{};
  // The copy may sit in the batch being built: written first, so the
  // search below sees it.
  if ((*u)->inbox_next != (*u)->inbox_committed) {
    commit_.commit();
    u = user(uid);
    if (!u) return u.error();
  }
  auto copy = find_copy(uid, **u, msg);
  if (!copy) return copy.error();
  // Entries are taken by stage_copy_rewrite; one left by a request that
  // failed in between is dropped with the rest past a bound (a missing one
  // is searched again).
  if (prepared_copies_.size() >= 4096) prepared_copies_.clear();
  prepared_copies_[uid + '\0' + std::to_string(msg.msg_id())] = std::move(*copy);
  return Ok{};
}

void Shard::stage_copy_rewrite(const std::string& uid, UserState& u, const v1::Message& msg) {
  std::optional<std::pair<std::uint64_t, std::string>> copy;
  auto prepared = prepared_copies_.find(uid + '\0' + std::to_string(msg.msg_id()));
  if (prepared != prepared_copies_.end()) {
    copy = std::move(prepared->second);
    prepared_copies_.erase(prepared);
  } else {
    // Not prepared (start-up's checked replay): searched here; a read error
    // leaves the copy as it is, logged.
    auto found = find_copy(uid, u, msg);
    if (!found) {
      spdlog::error("shard {}: the copy of a changed message in {}'s inbox could not be searched: {}", index_, uid,
                    found.error().message);
      return;
    }
    copy = std::move(*found);
  }
  if (copy) {
    commit_.batch().put_inbox(uid, copy->first, copy->second);
    return;
  }
  // No copy yet: if the target's row comes later (its write retried past
  // the event's), it is written changed (apply_late_change).
  const Target t = target_of(msg);
  if (t.msg_id == 0) return;
  if (late_changes_.size() >= kLateChanges) late_changes_.clear();
  auto [it, fresh] = late_changes_.try_emplace(uid + '\0' + std::to_string(t.msg_id), msg);
  if (!fresh && it->second.content_type() != kRecall) it->second = msg;  // a recall, or the later edit, wins
}

void Shard::apply_late_change(const std::string& uid, v1::Message& row) {
  auto it = late_changes_.find(uid + '\0' + std::to_string(row.msg_id()));
  if (it == late_changes_.end()) return;
  if (target_of(it->second).conv_seq == row.conv_seq()) apply_change(row, it->second);
  late_changes_.erase(it);
}

}  // namespace im::core
