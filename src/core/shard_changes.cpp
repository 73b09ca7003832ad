// Shard, part five: RECALL and EDIT (PROTOCOL 8.3). The event (10003 or
// 10004) travels the send path like a message; the conversation's owner
// checks the target and, in the event's batch, rewrites its history row and
// records it in `changes`, which every answer built from an inbox copy
// applies (core/changed_messages.h), so no answer returns the old body once
// the event is visible anywhere.

#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "core/shard.h"

namespace im::core {
namespace {

constexpr std::uint32_t kRecall = 10003;
constexpr std::uint32_t kEdit = 10004;
constexpr std::uint32_t kRecalled = 10005;
constexpr std::int64_t kClockSlackMs = 60000;
constexpr int kEditSearchRows = 20000;

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
  target.set_body(e.body());
  target.set_edit_version(e.edit_version());
  target.set_edited_ms(event.server_time_ms());
}

}  // namespace

Result<Shard::ChangePlan> Shard::check_change(SendJob& job, const GroupState* group) {
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
  // Where the change is recorded, with the edit events so far: a recall
  // empties their bodies too, or they would still say what it said.
  auto recorded = env_.store.get_change(target.msg_id());
  if (!recorded) return recorded.error();
  ChangePlan plan;
  plan.record = *recorded ? std::move(**recorded) : store::ChangeRecord{job.conv, target.conv_seq(), false, {}};
  if (event.content_type() == kRecall) {
    plan.record.recalled = true;
    if (plan.record.edit_seqs.size() < target.edit_version()) {
      // Not all recorded (the change row expired, or the store predates
      // it): the edit events are found in the history after the target.
      auto found = edit_seqs_of(job.conv, target);
      if (!found) return found.error();
      plan.record.edit_seqs = std::move(*found);
    }
    for (std::uint64_t seq : plan.record.edit_seqs) {
      auto edit_row = env_.store.get_history(job.conv, seq);
      if (!edit_row) return edit_row.error();
      v1::Message edit;
      if (!*edit_row || !edit.ParseFromString(**edit_row) || edit.content_type() != kEdit) continue;  // expired
      v1::MessageEdit e;
      if (e.ParseFromString(edit.body())) {
        e.clear_body();
        edit.set_body(e.SerializeAsString());
      }
      plan.emptied_edits.push_back(std::move(edit));
    }
  }
  apply_change(target, event);
  plan.target = std::move(target);
  return plan;
}

Result<std::vector<std::uint64_t>> Shard::edit_seqs_of(const std::string& conv, const v1::Message& target) {
  // Every edit came within limits.edit_window_s of the target (a minute
  // more for msg_id clocks running ahead after a restart); at most
  // kEditSearchRows rows are read (a miss is logged).
  const std::int64_t until_ms =
      target.server_time_ms() + std::int64_t{env_.config.limits.edit_window_s} * 1000 + kClockSlackMs;
  std::vector<std::uint64_t> seqs;
  int read = 0;
  v1::Message row;
  v1::MessageEdit edit;
  auto scanned = env_.store.scan_history(conv, target.conv_seq() + 1, UINT64_MAX, [&](std::uint64_t seq,
                                                                                     std::string_view bytes) {
    if (++read > kEditSearchRows) return false;
    if (!row.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) return true;
    if (row.server_time_ms() > until_ms) return false;
    if (row.content_type() == kEdit && edit.ParseFromString(row.body()) && edit.target_msg_id() == target.msg_id())
      seqs.push_back(seq);
    return seqs.size() < target.edit_version();
  });
  if (!scanned) return scanned.error();
  if (seqs.size() < target.edit_version() && read > kEditSearchRows)
    spdlog::warn("shard {}: {} of the {} edit events of message {} in {} found within {} rows", index_, seqs.size(),
                 target.edit_version(), target.msg_id(), conv, kEditSearchRows);
  return seqs;
}

void Shard::settle_target(const SendJob& job) {
  if (rewritten_in_batch_.count(batch_key(job.conv, job.target_seq)) > 0) commit_.commit();
}

void Shard::stage_target(const SendJob& job, ChangePlan& plan, std::uint64_t event_seq) {
  const v1::Message& target = plan.target;
  // PROTOCOL 8.6: an edited message is found by the edit's search text
  // only; a recalled one by none (the text goes with the body).
  commit_.batch().put_history(job.conv, target.conv_seq(), target.SerializeAsString(),
                              job.msg.content_type() == kEdit && env_.search ? job.search_text : std::string());
  if (job.msg.content_type() == kEdit) plan.record.edit_seqs.push_back(event_seq);
  commit_.batch().put_change(target.msg_id(), plan.record);
  env_.changes.add(target.msg_id());
  rewritten_in_batch_.insert(batch_key(job.conv, target.conv_seq()));
  for (const v1::Message& edit : plan.emptied_edits) {
    commit_.batch().put_history(job.conv, edit.conv_seq(), edit.SerializeAsString());
    commit_.batch().put_change(edit.msg_id(), {job.conv, edit.conv_seq(), false, {}});
    env_.changes.add(edit.msg_id());
  }
}

}  // namespace im::core
