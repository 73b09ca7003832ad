#pragma once
// A group command (GROUP_* from a client, or the admin API) on its way to
// the group's shard, and how to answer it.

#include <functional>
#include <memory>
#include <string>

#include "core/group_rules.h"
#include "im/protocol.h"
#include "im/result.h"
#include "proto/im.pb.h"

namespace im::core {

struct GroupReply {
  v1::GroupResp group;           // CREATE, GET, UPDATE
  v1::GroupMembersResp members;  // ADD_MEMBERS, REMOVE_MEMBERS
};

struct GroupCommand {
  Cmd cmd = Cmd::kGroupGet;
  GroupActor actor;
  std::string gid;
  v1::GroupCreateReq create;
  v1::GroupGetReq get;
  v1::GroupMembersReq members;
  v1::GroupUpdateReq update;
  // Runs on the group's shard once the change is durable, or refused.
  std::function<void(const Result<GroupReply>&)> done;
};

}  // namespace im::core
