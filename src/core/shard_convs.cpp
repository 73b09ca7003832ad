// Shard, part four: conversations (PROTOCOL 8.1-8.2 and DELETE of 8.3). A
// user's book (core/conv_book.h) lives on the user's shard, is loaded on
// first need, follows every committed inbox row while loaded, and is written
// coalesced with the cursors. Read positions, settings and deletes are marks
// in the user's own inbox, so the book never holds anything the inbox does
// not say. Group read positions (RECEIPTS) are rows on the group's shard.

#include <algorithm>
#include <deque>

#include <asio/post.hpp>
#include <spdlog/spdlog.h>

#include "common/clock.h"
#include "core/group_rules.h"
#include "core/shard.h"
#include "core/wire.h"
#include "store/conv_id.h"

namespace im::core {
namespace {

constexpr std::uint32_t kListDefault = 100;
constexpr std::uint32_t kListMax = 500;
constexpr std::uint32_t kReadersDefault = 500;
constexpr std::uint32_t kReadersMax = 1000;
constexpr std::size_t kMaxSeqsPerRequest = 100;  // RECEIPTS and DELETE (PROTOCOL 8.2, 8.3)
// The newest conv_seqs a CONV_LIST entry looks at for its last_message,
// past the ones the user deleted (when all of them are, it shows none):
// at most this many point reads per entry, 500 entries a page.
constexpr std::uint64_t kLastMessageLookBack = 20;
// The history rows one CONV_LIST reads at most to count the unread messages
// of large groups (PROTOCOL 9), all of them together.
constexpr std::uint64_t kLargeListBudget = 50'000;

// The order of CONV_LIST: pinned first, then newest activity, then the id
// (so a cursor names one place in it).
struct ListKey {
  bool pinned;
  std::int64_t activity_ms;
  std::string conv;

  bool operator<(const ListKey& o) const {
    if (pinned != o.pinned) return pinned;
    if (activity_ms != o.activity_ms) return activity_ms > o.activity_ms;
    return conv < o.conv;
  }
};

// "p|activity|conv", printable (a proto3 string must be UTF-8).
std::string encode_cursor(const ListKey& k) {
  return std::string(k.pinned ? "1" : "0") + "|" + std::to_string(k.activity_ms) + "|" + k.conv;
}

std::optional<ListKey> decode_cursor(const std::string& s) {
  const auto a = s.find('|');
  if (a != 1 || (s[0] != '0' && s[0] != '1')) return std::nullopt;
  const auto b = s.find('|', a + 1);
  if (b == std::string::npos || b == a + 1 || b - a - 1 > 18) return std::nullopt;  // 18 digits never overflow an int64
  std::int64_t activity = 0;
  for (std::size_t i = a + 1; i < b; ++i) {
    if (s[i] < '0' || s[i] > '9') return std::nullopt;
    activity = activity * 10 + (s[i] - '0');
  }
  return ListKey{s[0] == '1', activity, s.substr(b + 1)};
}

// What a length-delimited field of `bytes` adds to a message, at most: the
// bytes, a one-byte tag and a length of up to five bytes.
constexpr std::size_t field_size(std::size_t bytes) {
  return bytes + 6;
}

Error no_such_conversation() {
  return make_error(StatusCode::kNotFound, "no such conversation");
}

}  // namespace

// ---------------------------------------------------------------- the book

Result<ConvBook*> Shard::book(const std::string& uid, UserState& u) {
  if (u.book) return u.book.get();
  // Rows of this user still staged would be missed by the replay below and
  // by the book (which only follows rows staged while it is loaded).
  if (u.inbox_next != u.inbox_committed) {
    hold_users_ = true;  // `u` stays valid through the commit's idle hook
    commit_.commit();
    hold_users_ = false;
    schedule_trim();
  }
  auto loaded = std::make_unique<ConvBook>();
  auto scanned = env_.store.scan_convs(uid, [&](std::string_view conv, store::ConvRecord&& r) {
    loaded->load(std::string(conv), std::move(r));
    return true;
  });
  if (!scanned) return scanned.error();
  auto applied = env_.store.get_conv_applied(uid);
  if (!applied) return applied.error();
  loaded->set_applied(*applied);
  // The rows above what the states reflect: after a crash (the states are
  // written coalesced), or every row of a store written before them.
  if (*applied < u.inbox_committed) {
    v1::Message m;
    auto replayed = env_.store.scan_inbox(uid, *applied + 1, u.inbox_committed + 1,
                                          [&](std::uint64_t seq, std::string_view row) {
                                            if (!m.ParseFromArray(row.data(), static_cast<int>(row.size()))) {
                                              spdlog::warn("shard {}: inbox row {} of {} does not parse; skipped",
                                                           index_, seq, uid);
                                              return true;
                                            }
                                            loaded->apply(uid, ConvBook::row_of(m));
                                            return true;
                                          });
    if (!replayed) return replayed.error();
    loaded->set_applied(u.inbox_committed);
  }
  u.book = std::move(loaded);
  if (u.book->dirty() || *applied != u.book->applied()) mark_book_dirty(uid, u);
  return u.book.get();
}

void Shard::mark_book_dirty(const std::string& uid, UserState& u) {
  if (!u.book_listed) {
    u.book_listed = true;
    dirty_books_.emplace_back(users_.key_of(uid), &u);
  }
  arm_cursor_timer();
}

Result<Shard::ConvAt> Shard::conv_at(const std::string& uid, const std::string& conv) {
  auto u = user(uid);
  if (!u) return u.error();
  // A change of this user still staged (a mark of an earlier request) is
  // not in the book yet: written first, so no request reads a stale state.
  if ((*u)->book && (*u)->inbox_next != (*u)->inbox_committed) {
    hold_users_ = true;
    commit_.commit();
    hold_users_ = false;
    schedule_trim();
  }
  auto b = book(uid, **u);
  if (!b) return b.error();
  return ConvAt{*u, *b, (*b)->find(conv)};
}

Result<Shard::ConvAt> Shard::existing_conv(const std::string& uid, const std::string& conv) {
  auto at = conv_at(uid, conv);
  if (!at) return at.error();
  if (!at->entry || at->entry->rec.last_conv_seq == 0) return no_such_conversation();
  return at;
}

void Shard::flush_books() {
  if (dirty_books_.empty()) return;
  struct Written {
    std::string uid;
    std::vector<std::string> convs;
  };
  std::vector<Written> written;
  for (auto [uid, u] : dirty_books_) {
    u->book_listed = false;
    if (!u->book) continue;
    Written w{*uid, {}};
    for (auto& [conv, rec] : u->book->take_dirty()) {
      commit_.batch().put_conv(*uid, conv, rec);
      w.convs.push_back(conv);
    }
    commit_.batch().put_conv_applied(*uid, u->book->applied());
    written.push_back(std::move(w));
  }
  dirty_books_.clear();
  // A failed batch leaves those states to write again (the rows they
  // reflect are durable: only the coalesced copy is behind).
  commit_.after_commit([this, written = std::move(written)](bool ok) {
    if (ok) return;
    for (const Written& w : written) {
      UserState* u = users_.find(w.uid);
      if (!u || !u->book) continue;
      u->book->mark_all_dirty_again(w.convs);
      mark_book_dirty(w.uid, *u);
    }
  });
  commit_.schedule();
}

Result<std::uint64_t> Shard::stage_mark(const std::string& uid, std::uint32_t content_type, std::string body,
                                        std::uint64_t session_id) {
  auto id = clock_->next();
  if (!id) return id.error();
  auto job = std::make_shared<SendJob>();  // only to leave the asking session out of the PUSH
  job->session_id = session_id;
  v1::Message& m = job->msg;
  m.set_msg_id(*id);
  m.set_conv_type(v1::SYSTEM);
  m.set_to(uid);
  m.set_content_type(content_type);
  m.set_body(std::move(body));
  m.set_server_time_ms(wall_ms());
  return stage_inbox(uid, m, "", false, session_id != 0 ? job : nullptr);
}

// ---------------------------------------------------------------- CONV_LIST

Result<v1::Conversation> Shard::conversation_of(const std::string& uid, const std::string& conv,
                                                const store::ConvRecord& r) {
  v1::Conversation c;
  c.set_conv_type(conv_type_of_id(conv));
  c.set_peer(peer_of(uid, conv));
  c.set_read_seq(r.read_seq);
  c.set_unread_count(ConvBook::unread_count(r));
  if (c.conv_type() == v1::C2C) c.set_peer_read_seq(r.peer_read_seq);
  c.set_muted(r.muted);
  c.set_pinned(r.pinned);
  c.set_activity_ms(r.activity_ms);
  c.set_cleared_seq(r.cleared_seq);
  // The newest message the user may see: the history row (a recalled or
  // edited one as it is now), skipping what the user deleted, among the
  // kLastMessageLookBack newest above cleared_seq (the book's, which is the
  // stored one: both change with the same mark).
  const std::uint64_t top = r.last_conv_seq;
  if (top == 0 || r.cleared_seq >= top) return c;
  const std::uint64_t floor =
      std::max({r.first_conv_seq, r.cleared_seq + 1, top >= kLastMessageLookBack ? top - kLastMessageLookBack + 1 : 1});
  std::vector<std::uint64_t> deleted;  // descending
  if (r.has_deletes) {
    auto scanned = env_.store.scan_deleted(uid, conv, floor, top + 1, true, [&](std::uint64_t seq) {
      deleted.push_back(seq);
      return true;
    });
    if (!scanned) return scanned.error();
  }
  auto next_deleted = deleted.begin();
  for (std::uint64_t seq = top; seq >= floor && seq > 0; --seq) {
    if (next_deleted != deleted.end() && *next_deleted == seq) {
      ++next_deleted;
      continue;
    }
    auto row = env_.store.get_history(conv, seq);
    if (!row) return row.error();
    if (!*row) break;  // expired by retention
    v1::Message* m = c.mutable_last_message();
    if (!m->ParseFromString(**row)) {
      c.clear_last_message();
      break;
    }
    if (seq == r.last_conv_seq) m->set_inbox_seq(r.last_inbox_seq);
    c.set_last_conv_seq(seq);
    break;
  }
  return c;
}

Result<v1::ConvListResp> Shard::conv_list(const std::string& uid, const v1::ConvListReq& req) {
  std::optional<ListKey> after;
  if (!req.cursor().empty()) {
    after = decode_cursor(req.cursor());
    if (!after) return make_error(StatusCode::kBadRequest, "cursor is not one CONV_LIST gave");
  }
  auto u = user(uid);
  if (!u) return u.error();
  auto b = book(uid, **u);
  if (!b) return b.error();
  v1::ConvListResp resp;
  std::uint64_t total = 0;
  std::vector<std::pair<ListKey, const store::ConvRecord*>> order;
  std::deque<store::ConvRecord> views;  // large groups' (PROTOCOL 9), stable for `order`
  std::uint64_t history_budget = kLargeListBudget;
  for (const auto& [conv, e] : (*b)->entries()) {
    if (e.rec.last_conv_seq == 0) continue;  // settings or marks only: not a conversation of the list
    auto view = large_view(**u, uid, conv, e.rec, &history_budget);
    if (!view) return view.error();
    const store::ConvRecord& r = *view ? views.emplace_back(std::move(**view)) : e.rec;
    if (!r.muted) total += ConvBook::unread_count(r);
    if (r.hidden) continue;
    ListKey key{r.pinned, r.activity_ms, conv};
    if (after && !(*after < key)) continue;
    order.emplace_back(std::move(key), &r);
  }
  std::sort(order.begin(), order.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
  const std::uint32_t limit = req.limit() == 0 ? kListDefault : std::min(req.limit(), kListMax);
  // Everything the answer carries counts against the frame: the fixed
  // fields (has_more as if set), each conversation, and the cursor of the
  // last one (a C2C id can be 131 bytes).
  resp.set_total_unread(static_cast<std::uint32_t>(std::min<std::uint64_t>(total, UINT32_MAX)));
  resp.set_inbox_seq((*u)->inbox_committed);
  resp.set_has_more(true);
  const std::size_t budget = frame_budget();
  std::size_t used = resp.ByteSizeLong();
  bool more = false;
  for (const auto& [key, r] : order) {
    if (static_cast<std::uint32_t>(resp.conversations_size()) == limit) {
      more = true;
      break;
    }
    auto c = conversation_of(uid, key.conv, *r);
    if (!c) return c.error();
    std::string cursor = encode_cursor(key);
    const std::size_t cursor_size = field_size(cursor.size());
    std::size_t size = field_size(c->ByteSizeLong());
    if (used + size + cursor_size > budget) {
      if (resp.conversations_size() > 0) {
        more = true;
        break;
      }
      c->clear_last_message();  // one that cannot fit even alone: listed without it
      size = field_size(c->ByteSizeLong());
    }
    used += size;
    *resp.add_conversations() = std::move(*c);
    resp.set_next_cursor(std::move(cursor));
  }
  if (!more) resp.clear_next_cursor();
  resp.set_has_more(more);
  schedule_trim();
  return resp;
}

// ---------------------------------------------------------------- CONV_READ

void Shard::conv_read(const std::string& uid, const v1::ConvReadReq& req, std::uint64_t session_id,
                      std::function<void(const Result<v1::ConvReadResp>&)> done) {
  commit_.make_room();
  const std::string conv = conv_from_side(uid, req.conv_type(), req.peer());
  auto at = conv_at(uid, conv);
  if (!at) return done(at.error());
  const ConvBook::Entry* e = at->entry;
  v1::ConvReadResp resp;
  std::uint64_t newest = 0;
  std::uint64_t current = 0;  // the read position (a large group's own SENDs included)
  if (e) {
    auto view = large_view(*at->user, uid, conv, e->rec);
    if (!view) return done(view.error());
    const store::ConvRecord& r = *view ? **view : e->rec;
    resp.set_read_seq(r.read_seq);
    resp.set_unread_count(ConvBook::unread_count(r));
    newest = r.last_conv_seq;
    current = r.read_seq;
  }
  // Clamped to the newest conv_seq the user holds; it never moves back.
  const std::uint64_t target = req.read_seq() == 0 ? newest : std::min(req.read_seq(), newest);
  if (!e || target <= current) {
    schedule_trim();
    // Nothing moves and nothing goes into the inbox. But a group's public
    // read position is written after the mark, by another batch on the
    // group's shard: if that write failed or a crash came between the two,
    // only a retry can repair it, so it is merged again (the merge keeps
    // the largest: nothing changes when it is there already).
    if (!e || current == 0 || req.conv_type() != v1::GROUP || req.no_receipt()) return done(resp);
    Shard& group_shard = env_.shard_for(store::group_conv(req.peer()));
    asio::post(group_shard.context(),
               [&group_shard, gid = req.peer(), uid, at = current, resp, done = std::move(done)] {
                 group_shard.record_group_read(gid, uid, at, [resp, done](bool written) {
                   if (!written) return done(make_error(StatusCode::kInternal, "the read receipt could not be stored"));
                   done(resp);
                 });
               });
    return;
  }
  v1::ReadMark mark;
  mark.set_conv_type(req.conv_type());
  mark.set_peer(req.peer());
  mark.set_reader(uid);
  mark.set_read_seq(target);
  auto seq = stage_mark(uid, 10006, mark.SerializeAsString(), session_id);
  if (!seq) return done(seq.error());
  const bool receipt = !req.no_receipt() && req.peer() != uid;
  if (receipt && req.conv_type() == v1::C2C) {
    // The peer's receipt: a ReadMark in the peer's inbox naming the reader
    // (from the peer's side). Through a copy record when the peer lives on
    // another shard, as a SEND's copy, so a crash cannot lose it.
    v1::ReadMark theirs = mark;
    theirs.set_peer(uid);
    auto id = clock_->next();
    if (!id) return done(id.error());
    v1::Message m;
    m.set_msg_id(*id);
    m.set_conv_type(v1::SYSTEM);
    m.set_to(req.peer());
    m.set_content_type(10006);
    m.set_body(theirs.SerializeAsString());
    m.set_server_time_ms(wall_ms());
    Shard& owner = env_.shard_for(req.peer());
    if (&owner == this) {
      if (auto staged = stage_inbox(req.peer(), m, "", false, nullptr); !staged) return done(staged.error());
    } else {
      // The key's seq is the mark's msg_id: unique, and far above any conv_seq.
      store::FanoutKey key{conv, *id, req.peer()};
      store::CopyRecord record{false, m};
      commit_.batch().put_copy(key, record);
      commit_.after_commit([&owner, key, record](bool ok) {
        if (!ok) return;
        asio::post(owner.context(), [&owner, key, record] { owner.append_copy(key, record, nullptr, nullptr); });
      });
    }
  }
  UserState* user_state = at->user;
  const std::string* uid_key = users_.key_of(uid);
  commit_.after_commit([this, user_state, uid_key, conv, inbox_seq = *seq, target, done = std::move(done),
                        group_receipt = receipt && req.conv_type() == v1::GROUP, gid = req.peer()](bool ok) {
    if (!ok) return done(not_written("the read position could not be stored"));
    v1::ConvReadResp moved;
    moved.set_read_seq(target);
    moved.set_inbox_seq(inbox_seq);
    if (user_state->book) {
      if (const ConvBook::Entry* now = user_state->book->find(conv)) {
        auto view = large_view(*user_state, *uid_key, conv, now->rec);
        const store::ConvRecord& r = view && *view ? **view : now->rec;
        moved.set_read_seq(r.read_seq);
        moved.set_unread_count(ConvBook::unread_count(r));
      }
    }
    if (!group_receipt) return done(moved);
    // The member's public read position, on the group's shard (RECEIPTS).
    Shard& group_shard = env_.shard_for(store::group_conv(gid));
    asio::post(group_shard.context(), [&group_shard, gid, uid = *uid_key, target, moved, done] {
      group_shard.record_group_read(gid, uid, target, [moved, done](bool written) {
        if (!written) return done(make_error(StatusCode::kInternal, "the read receipt could not be stored"));
        done(moved);
      });
    });
  });
  commit_.schedule();
}

void Shard::record_group_read(const std::string& gid, const std::string& uid, std::uint64_t conv_seq,
                              std::function<void(bool ok)> done) {
  commit_.make_room();
  // Only a current member's position is kept: for one removed (or a group
  // dismissed) since its CONV_READ was checked, the removal deleted the row
  // and nothing writes it back.
  if (groups_.changed_in_batch(gid)) commit_.commit();
  auto g = groups_.find(gid);
  schedule_trim();
  if (!g) return done(false);
  if (!check_access(*g, GroupActor{uid, false})) return done(true);
  commit_.batch().merge_read(gid, uid, conv_seq);
  commit_.after_commit(std::move(done));
  commit_.schedule();
}

Result<Ok> Shard::check_member(const std::string& uid, const std::string& gid) {
  if (groups_.changed_in_batch(gid)) commit_.commit();
  auto g = groups_.find(gid);
  if (!g) return g.error();
  schedule_trim();
  return check_access(*g, GroupActor{uid, false});
}

// ---------------------------------------------------------------- CONV_UPDATE

void Shard::conv_update(const std::string& uid, const v1::ConvUpdateReq& req, std::uint64_t session_id,
                        std::function<void(const Result<v1::ConvUpdateResp>&)> done) {
  commit_.make_room();
  const std::string conv = conv_from_side(uid, req.conv_type(), req.peer());
  auto at = existing_conv(uid, conv);
  if (!at) return done(at.error());
  const ConvBook::Entry* e = at->entry;
  v1::ConvSettings settings;
  settings.set_conv_type(req.conv_type());
  settings.set_peer(req.peer());
  settings.set_muted(req.has_muted() ? req.muted() : e->rec.muted);
  settings.set_pinned(req.has_pinned() ? req.pinned() : e->rec.pinned);
  settings.set_hidden(req.has_hidden() ? req.hidden() : e->rec.hidden);
  if (settings.pinned() && !e->rec.pinned && at->book->pinned_count() >= env_.config.limits.max_pinned)
    return done(make_error(StatusCode::kTooLarge, "at most limits.max_pinned conversations may be pinned"));
  auto seq = stage_mark(uid, 10008, settings.SerializeAsString(), session_id);
  if (!seq) return done(seq.error());
  // The settings again as one small row, durable with the mark: an
  // offline_push reads `muted` from it without loading the book.
  commit_.batch().put_conv_settings(uid, conv, {settings.muted(), settings.pinned(), settings.hidden()});
  UserState* user_state = at->user;
  commit_.after_commit([this, user_state, uid, conv, inbox_seq = *seq, done = std::move(done)](bool ok) {
    if (!ok) return done(not_written("the settings could not be stored"));
    const ConvBook::Entry* now = user_state->book ? user_state->book->find(conv) : nullptr;
    if (!now) return done(make_error(StatusCode::kInternal, "the conversation state was lost"));
    auto view = large_view(*user_state, uid, conv, now->rec);
    // The settings are stored: a view that cannot be read falls back on the book.
    auto c = conversation_of(uid, conv, view && *view ? **view : now->rec);
    if (!c) return done(c.error());
    v1::ConvUpdateResp resp;
    *resp.mutable_conversation() = std::move(*c);
    resp.set_inbox_seq(inbox_seq);
    done(resp);
  });
  commit_.schedule();
}

// ---------------------------------------------------------------- DELETE (for me)

void Shard::delete_for_me(const std::string& uid, const v1::DeleteReq& req, std::uint64_t session_id,
                          std::function<void(const Result<v1::DeleteResp>&)> done) {
  commit_.make_room();
  const std::string conv = conv_from_side(uid, req.conv_type(), req.peer());
  auto at = existing_conv(uid, conv);
  if (!at) return done(at.error());
  const ConvBook::Entry* e = at->entry;
  // Nothing above the newest message the user holds: a later message is
  // not deleted in advance.
  auto view = large_view(*at->user, uid, conv, e->rec);
  if (!view) return done(view.error());
  const std::uint64_t newest = *view ? (*view)->last_conv_seq : e->rec.last_conv_seq;
  for (std::uint64_t seq : req.conv_seqs())
    if (seq > newest) return done(make_error(StatusCode::kBadRequest, "conv_seq beyond the conversation"));
  const std::uint64_t up_to = std::min(req.up_to_seq(), newest);
  v1::MessageDelete mark;
  mark.set_conv_type(req.conv_type());
  mark.set_peer(req.peer());
  *mark.mutable_conv_seqs() = req.conv_seqs();
  mark.set_up_to_seq(up_to);
  auto seq = stage_mark(uid, 10007, mark.SerializeAsString(), session_id);
  if (!seq) return done(seq.error());
  // The rows, in the mark's batch. Only seqs above cleared_seq get one, and
  // when cleared_seq moves up the rows it now covers go (one range delete):
  // what a user can make the server keep is bounded by the messages above
  // cleared_seq, and every reader reads only the range it shows.
  const std::uint64_t cleared = std::max(up_to, e->rec.cleared_seq);
  for (std::uint64_t s : req.conv_seqs())
    if (s > cleared) commit_.batch().put_deleted(uid, conv, s);
  if (up_to > e->rec.cleared_seq) {
    commit_.batch().put_cleared(uid, conv, up_to);
    if (e->rec.has_deletes) commit_.batch().del_deleted_upto(uid, conv, up_to);
  }
  commit_.after_commit([this, inbox_seq = *seq, done = std::move(done)](bool ok) {
    if (!ok) return done(not_written("the delete could not be stored"));
    v1::DeleteResp resp;
    resp.set_inbox_seq(inbox_seq);
    done(resp);
  });
  commit_.schedule();
}

// ---------------------------------------------------------------- RECEIPTS

Result<v1::ReceiptsResp> Shard::receipts(const std::string& uid, const v1::ReceiptsReq& req) {
  if (groups_.changed_in_batch(req.gid())) commit_.commit();
  auto g = groups_.find(req.gid());
  if (!g) return g.error();
  schedule_trim();
  if (auto access = check_access(*g, GroupActor{uid, uid.empty()}); !access) return access.error();
  const GroupState& group = **g;
  if (group.members.size() > env_.config.limits.receipts_max_members)
    return make_error(StatusCode::kDisabled, "read receipts are off in groups over limits.receipts_max_members");
  if (static_cast<std::size_t>(req.conv_seqs_size()) > kMaxSeqsPerRequest)
    return make_error(StatusCode::kBadRequest, "at most 100 conv_seqs");
  // The members' public read positions (one row per member that read).
  std::map<std::string, std::uint64_t, std::less<>> reads;
  auto scanned = env_.store.scan_reads(req.gid(), [&](std::string_view member, std::uint64_t seq) {
    if (group.is_member(std::string(member))) reads.emplace(std::string(member), seq);
    return true;
  });
  if (!scanned) return scanned.error();
  const std::string conv = store::group_conv(req.gid());
  v1::ReceiptsResp resp;
  v1::Message m;
  for (std::uint64_t seq : req.conv_seqs()) {
    std::string sender;
    auto row = env_.store.get_history(conv, seq);
    if (!row) return row.error();
    if (*row && m.ParseFromString(**row)) sender = m.from();
    v1::ReadCount* count = resp.add_counts();
    count->set_conv_seq(seq);
    const bool sender_member = !sender.empty() && group.is_member(sender);
    count->set_member_count(static_cast<std::uint32_t>(group.members.size() - (sender_member ? 1 : 0)));
    std::uint32_t read = 0;
    for (const auto& [member, at] : reads)
      if (member != sender && at >= seq) ++read;
    count->set_read_count(read);
  }
  if (req.with_readers()) {
    const std::uint32_t limit = req.readers_limit() == 0 ? kReadersDefault : std::min(req.readers_limit(), kReadersMax);
    std::size_t used = resp.ByteSizeLong();
    const std::size_t budget = frame_budget();
    for (auto it = group.members.upper_bound(req.readers_after()); it != group.members.end(); ++it) {
      v1::MemberRead r;
      r.set_uid(it->first);
      auto at = reads.find(it->first);
      r.set_read_seq(at == reads.end() ? 0 : at->second);
      const std::size_t size = r.ByteSizeLong() + 4;
      if (static_cast<std::uint32_t>(resp.readers_size()) == limit || used + size > budget) {
        resp.set_readers_more(true);
        break;
      }
      used += size;
      *resp.add_readers() = std::move(r);
    }
  }
  return resp;
}

}  // namespace im::core
