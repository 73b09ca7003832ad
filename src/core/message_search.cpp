#include "core/message_search.h"

#include <charconv>
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "core/core_env.h"
#include "core/wire.h"
#include "search/query_text.h"
#include "search/search_index.h"
#include "store/conv_id.h"

namespace im::core {

namespace {

// The cursor names the msg_id the next page starts below.
constexpr std::string_view kCursorPrefix = "s1.";

std::string encode_cursor(std::uint64_t msg_id) {
  return std::string(kCursorPrefix) + std::to_string(msg_id);
}

// Whether `uid` deleted `conv_seq` of `conv` for themself (PROTOCOL 8.3),
// with the conversation's cleared_seq read once per query.
class DeletedFilter {
 public:
  DeletedFilter(store::Store& store, const std::string& uid) : store_(store), uid_(uid) {}

  Result<bool> hidden(const std::string& conv, std::uint64_t conv_seq) {
    auto it = cleared_.find(conv);
    if (it == cleared_.end()) {
      auto cleared = store_.get_cleared(uid_, conv);
      if (!cleared) return cleared.error();
      it = cleared_.emplace(conv, *cleared).first;
    }
    if (conv_seq <= it->second) return true;
    bool found = false;
    auto scanned = store_.scan_deleted(uid_, conv, conv_seq, conv_seq + 1, false, [&](std::uint64_t) {
      found = true;
      return false;
    });
    if (!scanned) return scanned.error();
    return found;
  }

 private:
  store::Store& store_;
  const std::string& uid_;
  std::unordered_map<std::string, std::uint64_t> cleared_;
};

// The conversations searched (PROTOCOL 8.6), as the index's filter terms
// and the check of each hit's conversation: the one named (a group only
// while a member, as HISTORY), else the caller's C2C conversations (one
// term: the caller's) and every group it is in now (a term each).
struct Scope {
  std::vector<std::string> terms;
  std::string one;                         // scoped: the conversation
  std::unordered_set<std::string> groups;  // unscoped: the caller's groups
};

Result<Scope> scope_of(store::Store& store, const SearchRequest& req) {
  Scope scope;
  if (req.conv_type == v1::C2C) {
    scope.one = store::c2c_conv(req.uid, req.peer);
  } else if (req.conv_type == v1::GROUP) {
    auto member = store.in_group(req.uid, req.peer);
    if (!member) return member.error();
    if (!*member) {
      auto group = store.get_group(req.peer);
      if (!group) return group.error();
      if (!*group) return make_error(StatusCode::kNotFound, "no such group");
      return make_error(StatusCode::kForbidden, "not a member of the group");
    }
    scope.one = store::group_conv(req.peer);
  }
  if (!scope.one.empty()) {
    scope.terms.push_back(search::conv_term(scope.one));
    return scope;
  }
  scope.terms.push_back(search::user_term(req.uid));
  auto scanned = store.scan_user_groups(req.uid, [&](std::string_view gid) {
    scope.groups.insert(store::group_conv(gid));
    return scope.groups.size() <= kSearchMaxGroups;
  });
  if (!scanned) return scanned.error();
  if (scope.groups.size() > kSearchMaxGroups)
    return make_error(
        StatusCode::kTooLarge,
        fmt::format("a member of more than {} groups: search one conversation (conv_type and peer)", kSearchMaxGroups));
  for (const auto& conv : scope.groups) scope.terms.push_back(search::conv_term(conv));
  return scope;
}

// Whether `conv` is one of the scope's (a C2C one: the caller is one of
// its two users).
bool in_scope(const Scope& scope, const std::string& uid, std::string_view conv) {
  if (!scope.one.empty()) return conv == scope.one;
  if (conv.starts_with("g:")) return scope.groups.count(std::string(conv)) > 0;
  auto users = store::c2c_users(conv);
  return users && (users->first == uid || users->second == uid);
}

}  // namespace

std::shared_ptr<void> SearchSlots::take(const std::string& uid) {
  {
    std::lock_guard lock(mutex_);
    std::uint32_t& held = held_[uid];
    if (held == kPerUser) return nullptr;
    ++held;
  }
  return std::shared_ptr<void>(this, [this, uid](void*) { give_back(uid); });
}

void SearchSlots::give_back(const std::string& uid) {
  std::lock_guard lock(mutex_);
  auto it = held_.find(uid);
  if (it != held_.end() && --it->second == 0) held_.erase(it);
}

Result<std::uint64_t> decode_search_cursor(std::string_view cursor) {
  if (cursor.empty()) return std::uint64_t{0};
  auto bad = [] { return make_error(StatusCode::kBadRequest, "cursor is not one SEARCH gave"); };
  if (!cursor.starts_with(kCursorPrefix)) return bad();
  cursor.remove_prefix(kCursorPrefix.size());
  std::uint64_t id = 0;
  auto [p, ec] = std::from_chars(cursor.data(), cursor.data() + cursor.size(), id);
  if (ec != std::errc{} || p != cursor.data() + cursor.size() || id == 0) return bad();
  return id;
}

Result<v1::SearchResp> run_search(CoreEnv& env, search::SearchIndex& index, const SearchRequest& req) {
  auto scope = scope_of(env.store, req);
  if (!scope) return scope.error();
  const std::vector<std::string> runs = search::cjk_runs(req.query);
  DeletedFilter deleted(env.store, req.uid);
  std::unordered_map<std::string, bool> member_of;  // groups' membership, read once a query
  wire::MessageRows rows(req.frame_budget);
  std::vector<std::string> found;
  std::uint64_t last_found = 0;
  std::uint64_t last_examined = 0;
  std::uint64_t prev = 0;
  std::uint32_t examined = 0;
  bool full = false;
  Result<Ok> read = Ok{};
  v1::Message m;
  auto scanned = index.find(req.query, scope->terms, req.below_msg_id, [&](const search::SearchIndex::Hit& hit) {
    ++examined;
    last_examined = hit.msg_id;
    if (hit.msg_id == prev) return true;  // one message in two shards' indexes (never expected)
    prev = hit.msg_id;
    if (!in_scope(*scope, req.uid, hit.ref.conv) || !hit.whole) return true;
    // A member removed since the scope was listed finds nothing more there.
    if (hit.ref.conv.starts_with("g:")) {
      auto [it, fresh] = member_of.try_emplace(hit.ref.conv, false);
      if (fresh) {
        auto in = env.store.in_group(req.uid, std::string_view(hit.ref.conv).substr(2));
        if (!in) {
          read = in.error();
          return false;
        }
        it->second = in->has_value();
      }
      if (!it->second) return true;
    }
    auto row = env.store.get_history_row(hit.ref.conv, hit.ref.conv_seq);
    if (!row) {
      read = row.error();
      return false;
    }
    // Gone by retention, recalled (a tombstone), or edited since it was
    // indexed (its latest text is indexed within commit_interval_ms).
    if (!*row || !m.ParseFromString((*row)->message) || m.msg_id() != hit.msg_id || m.content_type() >= 10000 ||
        m.edit_version() != hit.ref.edit_version)
      return true;
    // CJK runs side by side, which Xapian's character pairs do not say.
    if (!runs.empty() && !search::holds_runs(search::indexed_text(env.config.search, m, (*row)->search_text), runs))
      return true;
    auto hidden = deleted.hidden(hit.ref.conv, hit.ref.conv_seq);
    if (!hidden) {
      read = hidden.error();
      return false;
    }
    if (*hidden) return true;
    const std::string& bytes = (*row)->message;
    if (!rows.fits(bytes) && found.empty()) return true;  // stored under a larger frame limit: skipped (see pull)
    if (found.size() == req.limit || !rows.fits(bytes)) {
      full = true;
      return false;
    }
    rows.add(bytes);
    found.push_back(std::move((*row)->message));
    last_found = hit.msg_id;
    return true;
  });
  if (!scanned) return scanned.error();
  if (!read) return read.error();
  v1::SearchResp resp;
  for (const auto& row : found) resp.add_messages()->ParseFromString(row);
  if (full) {
    resp.set_has_more(true);
    resp.set_next_cursor(encode_cursor(last_found));
  } else if (examined >= search::SearchIndex::kMaxExamined) {
    // The page ended at the query's bound: the next one goes on from the
    // last hit looked at.
    resp.set_has_more(true);
    resp.set_next_cursor(encode_cursor(last_examined));
  }
  return resp;
}

}  // namespace im::core
