// Shard, part three: groups. The group's shard (that of "g:" + gid) owns
// the group's row, its member cache and its conversation; a command becomes
// a plan (core/group_rules), applied as one batch (rows + each event's
// history row + its fan-out record); then each event or message is fanned
// out in chains of slices on the members' shards (core/fanout_plan).

#include <unordered_map>

#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include "common/clock.h"
#include "core/fanout_chain.h"
#include "core/fanout_plan.h"
#include "core/shard.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

constexpr std::size_t kListSlack = 256;  // GROUP_LIST's frame room beside its groups

}  // namespace

// The chains of one group message still running; touched only on `home`.
struct Shard::GroupFanout {
  Shard* home = nullptr;
  store::FanoutKey key;
  std::size_t chains = 0;
};

// ---------------------------------------------------------------- commands

void Shard::group_command(std::shared_ptr<GroupCommand> cmd) {
  // Room first: a full batch written now may fail and drop cached groups,
  // which must not happen under a reference taken below.
  commit_.make_room();
  if (groups_.changed_in_batch(cmd->gid)) commit_.commit();
  auto reply = run_group_command(*cmd);
  schedule_trim();
  if (!reply || cmd->cmd == Cmd::kGroupGet) return cmd->done(reply);
  // Answer once the change is durable (its events are then durably queued).
  commit_.after_commit([this, cmd, reply = std::move(*reply)](bool ok) {
    if (ok) return cmd->done(reply);
    cmd->done(not_written("the change could not be stored"));
  });
  commit_.schedule();
}

Result<GroupReply> Shard::run_group_command(GroupCommand& c) {
  auto found = groups_.find(c.gid);
  if (!found) return found.error();
  GroupState* g = *found;
  const std::uint32_t max_members = env_.config.limits.max_group_members;
  GroupReply reply;
  if (c.cmd == Cmd::kGroupCreate) {
    auto plan = plan_create(g, c.actor.uid, c.create, wall_ms(), max_members);
    if (!plan) return plan.error();
    const auto slices = event_slices(*plan, max_row_bytes());
    if (!c.actor.admin) {
      if (auto charged = charge_rows(c.actor.uid, rows_of(nullptr, *plan, slices)); !charged) return charged.error();
    }
    if (auto applied = apply_group_plan(nullptr, *plan, slices); !applied) return applied.error();
    GroupState* created = *groups_.find(c.gid);
    *reply.group.mutable_group() = created->info;
    list_members(*created, "", 0, frame_budget(), reply.group);
    return reply;
  }
  if (auto access = check_access(g, c.actor); !access) return access.error();
  if (c.cmd == Cmd::kGroupGet) {
    reply.group = read_group(*g, c.actor, c.get, frame_budget());
    return reply;
  }
  Result<GroupPlan> plan = make_error(StatusCode::kUnknownCommand, "not a group command");
  switch (c.cmd) {
    case Cmd::kGroupAddMembers: plan = plan_add(*g, c.actor, c.members, max_members); break;
    case Cmd::kGroupRemoveMembers: plan = plan_remove(*g, c.actor, c.members); break;
    case Cmd::kGroupLeave: plan = plan_leave(*g, c.actor); break;
    case Cmd::kGroupUpdate: plan = plan_update(*g, c.actor, c.update); break;
    case Cmd::kGroupDismiss: plan = plan_dismiss(*g, c.actor); break;
    default: break;
  }
  if (!plan) return plan.error();
  if (g->info.large()) read_fanout(*plan);
  const auto slices = event_slices(*plan, max_row_bytes());
  if (!c.actor.admin) {
    if (auto charged = charge_rows(c.actor.uid, rows_of(g, *plan, slices)); !charged) return charged.error();
  }
  if (auto applied = apply_group_plan(g, *plan, slices); !applied) return applied.error();
  reply.members = plan->members;
  *reply.group.mutable_group() = g->info;
  return reply;
}

std::uint64_t Shard::rows_of(const GroupState* g, const GroupPlan& plan, const std::vector<EventSlice>& slices) const {
  if (!switches_to_read_fanout(g, plan, env_.config.limits.write_fanout_max_members)) return plan_rows(plan, slices);
  const auto before = g ? member_uids(*g) : std::vector<std::string>();
  std::uint64_t rows = plan.info.member_count();  // FANOUT_CHANGED
  for (const EventSlice& slice : slices) rows += switching_recipients(plan, slice, before).size();
  return rows;
}

Result<Ok> Shard::apply_group_plan(GroupState* g, const GroupPlan& plan, const std::vector<EventSlice>& slices) {
  if (plan.events.empty()) return Ok{};  // nothing changes (an ADD of members only)
  const std::string& gid = plan.info.gid();
  const bool large = g && g->info.large();
  const bool switching = switches_to_read_fanout(g, plan, env_.config.limits.write_fanout_max_members);
  // What can fail comes first: the conversation's counter and the events'
  // ids. Past this point the plan is applied whole.
  auto counter = convs_.get(store::group_conv(gid));
  if (!counter) return counter.error();
  std::vector<v1::Message> events;
  for (const EventSlice& slice : slices) {
    auto id = clock_->next();
    if (!id) return id.error();
    v1::Message m = event_message(plan, slice);
    m.set_msg_id(*id);
    m.set_server_time_ms(wall_ms());
    events.push_back(std::move(m));
  }
  std::uint64_t switch_id = 0;
  if (switching) {
    auto id = clock_->next();
    if (!id) return id.error();
    switch_id = *id;
  }
  // A switching plan's CREATED and MEMBERS_ADDED go to the members before
  // it and those they name, then FANOUT_CHANGED to everyone.
  const auto before = switching && g ? member_uids(*g) : std::vector<std::string>();
  if (g) {
    groups_.touch(gid);
  } else {
    g = &groups_.create(gid);
  }
  g->info = plan.info;
  g->dismissed = plan.dismiss;
  const std::int64_t now = wall_ms();
  store::Batch& batch = commit_.batch();
  // Each added member's join: the conv_seq of the event message naming it
  // (the slices take the next conv_seqs in order, below).
  std::unordered_map<std::string_view, std::uint64_t> joined;
  for (std::size_t i = 0; i < slices.size(); ++i) {
    const GroupEventPlan& e = plan.events[slices[i].event];
    if (e.type != v1::CREATED && e.type != v1::MEMBERS_ADDED) continue;
    for (std::size_t k = slices[i].from; k < slices[i].to; ++k) joined[e.uids[k]] = (*counter)->next + 1 + i;
  }
  for (const auto& uid : plan.added) {
    const bool owner = uid == plan.info.owner();
    g->members.emplace(uid, owner);
    auto at = joined.find(uid);
    batch.put_member(gid, uid, {owner, now}, at == joined.end() ? 0 : at->second);
  }
  for (const auto& uid : plan.removed) {
    g->members.erase(uid);
    batch.del_member(gid, uid);
  }
  // Counters loaded: nothing below fails.
  for (std::size_t i = 0; i < slices.size(); ++i) {
    auto recipients = switching ? switching_recipients(plan, slices[i], before) : slice_recipients(plan, slices[i]);
    if (large) {
      (void)stage_large_message(std::move(events[i]), std::move(recipients), nullptr, g->members.size());
    } else {
      (void)stage_group_message(std::move(events[i]), std::move(recipients), nullptr);
    }
  }
  if (switching) {
    // PROTOCOL 9: FANOUT_CHANGED at conv_seq S, written to every member's
    // inbox like the events before it; read fan-out from S + 1 on.
    const std::uint64_t from_seq = (*counter)->next + 2;
    g->info.set_large(true);
    g->info.set_large_from_seq(from_seq);
    v1::Message m = fanout_changed_message(plan, g->info);
    m.set_msg_id(switch_id);
    m.set_server_time_ms(wall_ms());
    (void)stage_group_message(std::move(m), member_uids(*g), nullptr);
    batch.put_large_group(gid, from_seq);
    commit_.after_commit([this, gid, from_seq, members = member_uids(*g)](bool ok) mutable {
      if (!ok) return;
      env_.large.add(gid, from_seq);
      index_large_members(gid, std::move(members), true);
    });
  }
  batch.put_group({g->info, g->dismissed});
  if (large && plan.dismiss) {
    // The group stays large for good (its marker too): its members' lists
    // still count its messages, up to the DISMISSED in their inboxes.
    commit_.after_commit([this, gid](bool ok) {
      if (!ok) return;
      for (auto& shard : env_.shards)
        asio::post(shard->context(), [s = shard.get(), gid] { s->large_group_dropped(gid); });
    });
  } else if (large) {
    commit_.after_commit([this, gid, added = plan.added, removed = plan.removed](bool ok) mutable {
      if (!ok) return;
      if (!added.empty()) index_large_members(gid, std::move(added), true);
      if (!removed.empty()) index_large_members(gid, std::move(removed), false);
    });
  }
  return Ok{};
}

Result<v1::GroupListResp> Shard::groups_of(const std::string& uid, const std::string& after_gid, bool* more) {
  v1::GroupListResp out;
  if (more) *more = false;
  std::size_t size = kListSlack;
  Result<Ok> read = Ok{};
  auto scanned = env_.store.scan_user_groups(
      uid,
      [&](std::string_view gid) {
        auto row = env_.store.get_group(gid);
        if (!row) {
          read = row.error();
          return false;
        }
        if (!*row || (*row)->dismissed) return true;
        const std::size_t n = (*row)->info.ByteSizeLong() + 4;
        if (size + n > env_.config.server.max_frame_bytes) {
          if (more) *more = true;
          return false;
        }
        size += n;
        *out.add_groups() = std::move((*row)->info);
        return true;
      },
      after_gid);
  if (!scanned) return scanned.error();
  if (!read) return read.error();
  return out;
}

// ---------------------------------------------------------------- group messages and fan-out

Result<Ok> Shard::stage_group_history(v1::Message& msg, const SendJob* job, std::size_t members) {
  const std::string conv = store::group_conv(msg.to());
  auto counter = convs_.get(conv);
  if (!counter) return counter.error();
  const std::string_view text = job ? search_text_of(*job, msg) : std::string_view();
  msg.set_conv_seq(convs_.assign(**counter, searchable(msg, text)));
  commit_.batch().put_history(conv, msg.conv_seq(), msg.SerializeAsString(), text);
  ++commit_.staged().history;
  const bool sent = job != nullptr;
  // Sending counts as reading (PROTOCOL 8.2): the sender's public read
  // position, for RECEIPTS, in groups small enough to have them.
  if (sent && msg.content_type() < 10000 && members <= env_.config.limits.receipts_max_members)
    commit_.batch().merge_read(msg.to(), msg.from(), msg.conv_seq());
  return Ok{};
}

Result<std::uint64_t> Shard::stage_group_message(v1::Message msg, std::vector<std::string> recipients,
                                                 std::shared_ptr<SendJob> job) {
  auto staged = stage_group_history(msg, job.get(), recipients.size());
  if (!staged) return staged.error();
  const std::string conv = store::group_conv(msg.to());
  const std::uint64_t conv_seq = msg.conv_seq();
  store::FanoutKey key{conv, conv_seq, ""};
  store::GroupFanoutRecord record{std::move(msg), std::move(recipients),
                                  static_cast<std::uint32_t>(env_.shards.size())};
  commit_.batch().put_group_fanout(key, record);
  auto shared = std::make_shared<const v1::Message>(std::move(record.msg));
  commit_.after_commit([this, key, shared, recipients = std::move(record.recipients), job](bool ok) {
    if (ok) return start_group_fanout(key, shared, recipients, job);
    if (job) answer_on_sender(job, not_written("the message could not be stored"));
  });
  return conv_seq;
}

void Shard::start_group_fanout(store::FanoutKey key, std::shared_ptr<const v1::Message> msg,
                               const std::vector<std::string>& recipients, std::shared_ptr<SendJob> job) {
  auto chains = fanout_chains(recipients, msg->from(), static_cast<std::uint32_t>(env_.shards.size()));
  auto fanout = std::make_shared<GroupFanout>();
  fanout->home = this;
  fanout->key = std::move(key);
  for (const auto& c : chains) fanout->chains += c.empty() ? 0 : 1;
  if (fanout->chains == 0) {
    ++fanout->chains;
    return chain_done(fanout);
  }
  for (std::uint32_t i = 0; i < chains.size(); ++i) {
    if (chains[i].empty()) continue;
    auto chain = std::make_shared<FanoutChain>();
    chain->msg = msg;
    chain->key = fanout->key;
    chain->index = i;
    chain->uids = std::move(chains[i]);
    if (job && chain->uids.front() == msg->from()) chain->job = job;
    chain->done = [fanout](bool) {
      Shard& home = *fanout->home;
      asio::post(home.context(), [&home, fanout] { home.chain_done(fanout); });
    };
    Shard& first = env_.shard_for(chain->uids.front());
    asio::post(first.context(), [&first, chain] { first.append_group_slice(chain, 0); });
  }
}

void Shard::chain_done(const std::shared_ptr<GroupFanout>& fanout) {
  if (--fanout->chains > 0) return;
  commit_.make_room();
  commit_.batch().del_fanout(fanout->key);  // the record and its progress rows
  commit_.schedule();
}

void Shard::append_group_slice(std::shared_ptr<FanoutChain> chain, std::size_t offset) {
  commit_.make_room();
  const auto& uids = chain->uids;
  Shard& owner = env_.shard_for(uids[offset]);
  if (&owner != this) {  // start-up with another shard count: the chain hops
    asio::post(owner.context(), [&owner, chain, offset] { owner.append_group_slice(chain, offset); });
    return;
  }
  auto failed = [this, chain, offset] {
    if (!chain->retry) return chain->done(false);
    // The fan-out record keeps the slice safe meanwhile.
    retry_later([this, chain, offset] { append_group_slice(chain, offset); });
  };
  const std::size_t end = slice_end(uids, offset, env_.shards.size());
  // The whole slice is staged, with its progress row, or none of it.
  for (std::size_t i = offset; i < end; ++i)
    if (!user(uids[i])) return failed();
  std::uint64_t sender_seq = 0;
  for (std::size_t i = offset; i < end; ++i) {
    // The sender's own row is its SEND's dedupe record, at start-up too.
    const bool is_sender = uids[i] == chain->msg->from();
    const bool answers = chain->job && i == 0;
    auto seq = stage_inbox(uids[i], *chain->msg, chain->key.conv, is_sender, answers ? chain->job : nullptr);
    if (answers) sender_seq = *seq;
  }
  commit_.batch().put_fanout_progress(chain->key, {chain->index, static_cast<std::uint32_t>(end)});
  commit_.after_commit([this, chain, offset, end, sender_seq, failed](bool ok) {
    if (!ok) return failed();
    if (chain->job && offset == 0) finish_send(chain->job, send_resp(*chain->msg, sender_seq));
    if (end == chain->uids.size()) return chain->done(true);
    // The next slice goes to the back of the queue: other users' traffic
    // runs in between.
    Shard& next = env_.shard_for(chain->uids[end]);
    asio::post(next.context(), [&next, chain, end] { next.append_group_slice(chain, end); });
  });
  commit_.schedule();
}

void Shard::replay_checked_row(std::string uid, v1::Message msg, std::shared_ptr<RecoveryTally> tally) {
  commit_.make_room();
  auto u = user(uid);
  if (!u) return tally->finish(false);
  // The whole inbox is searched: such a record gives no progress to go by.
  bool present = false;
  auto scanned = env_.store.scan_inbox(uid, 1, (*u)->inbox_committed + 1, [&](std::uint64_t, std::string_view row) {
    v1::Message m;
    present = m.ParseFromArray(row.data(), static_cast<int>(row.size())) && m.msg_id() == msg.msg_id();
    return !present;
  });
  if (!scanned) return tally->finish(false);
  if (present) return tally->finish(true);
  (void)stage_inbox(uid, msg, "", uid == msg.from(), nullptr);  // the user is loaded
  commit_.after_commit([tally](bool ok) { tally->finish(ok); });
  commit_.schedule();
}

}  // namespace im::core
