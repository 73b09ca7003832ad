// GROUP_CREATE, GROUP_GET, GROUP_LIST, GROUP_ADD_MEMBERS,
// GROUP_REMOVE_MEMBERS, GROUP_LEAVE, GROUP_UPDATE, GROUP_DISMISS. The rules
// are in core/group_rules; the group's shard applies them.

#include <random>

#include <fmt/format.h>
#include <asio/post.hpp>

#include "core/commands.h"
#include "core/service.h"

namespace im::core {

std::string new_group_id() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return fmt::format("g{:016x}", rng());
}

namespace {

// A command of this session; answered with `pick(reply)` (none: an empty body).
template <class Pick>
std::shared_ptr<GroupCommand> command_of(Call& call, Pick pick) {
  auto cmd = std::make_shared<GroupCommand>();
  cmd->cmd = call.header.cmd;
  cmd->actor = {call.ctx.uid, false};
  cmd->done = [replier = call.replier(), pick](const Result<GroupReply>& r) {
    if (!r) return replier.fail(r.error());
    replier.ok(pick(*r));
  };
  return cmd;
}

const google::protobuf::MessageLite* group_resp(const GroupReply& r) {
  return &r.group;
}
const google::protobuf::MessageLite* members_resp(const GroupReply& r) {
  return &r.members;
}
const google::protobuf::MessageLite* no_body(const GroupReply&) {
  return nullptr;
}

}  // namespace

void register_group_commands(Dispatcher& d, Service& s) {
  d.add<v1::GroupCreateReq>(Cmd::kGroupCreate, [&s](Call& call, v1::GroupCreateReq& req) {
    auto cmd = command_of(call, group_resp);
    if (req.gid().empty()) req.set_gid(new_group_id());
    cmd->gid = req.gid();
    cmd->create = std::move(req);
    s.run_group(std::move(cmd));
  });
  d.add<v1::GroupGetReq>(Cmd::kGroupGet, [&s](Call& call, v1::GroupGetReq& req) {
    auto cmd = command_of(call, group_resp);
    cmd->gid = req.gid();
    cmd->get = std::move(req);
    s.run_group(std::move(cmd));
  });
  for (Cmd which : {Cmd::kGroupAddMembers, Cmd::kGroupRemoveMembers}) {
    d.add<v1::GroupMembersReq>(which, [&s](Call& call, v1::GroupMembersReq& req) {
      auto cmd = command_of(call, members_resp);
      cmd->gid = req.gid();
      cmd->members = std::move(req);
      s.run_group(std::move(cmd));
    });
  }
  d.add<v1::GroupUpdateReq>(Cmd::kGroupUpdate, [&s](Call& call, v1::GroupUpdateReq& req) {
    auto cmd = command_of(call, group_resp);
    cmd->gid = req.gid();
    cmd->update = std::move(req);
    s.run_group(std::move(cmd));
  });
  for (Cmd which : {Cmd::kGroupLeave, Cmd::kGroupDismiss}) {
    d.add<v1::GroupIdReq>(which, [&s](Call& call, v1::GroupIdReq& req) {
      auto cmd = command_of(call, no_body);
      cmd->gid = req.gid();
      s.run_group(std::move(cmd));
    });
  }
  d.add_empty(Cmd::kGroupList, [&s](Call& call) {
    Shard& shard = s.shard_for(call.ctx.uid);
    asio::post(shard.context(),
               [&shard, replier = call.replier(), uid = call.ctx.uid] { replier.answer(shard.groups_of(uid)); });
  });
}

}  // namespace im::core
