// Shard, part one: the loop, the user state (sessions, presence, cursors,
// inbox counters), reads, and what happens when a batch is written. The
// send path is in shard_send.cpp, the groups in shard_groups.cpp.

#include "core/shard.h"

#include <algorithm>
#include <atomic>
#include <random>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "core/outbox_events.h"
#include "core/wire.h"
#include "net/frames.h"
#include "search/search_index.h"
#include "store/conv_id.h"
#include "store/outbox.h"

namespace im::core {
namespace {

constexpr std::uint32_t kPullDefault = 100;
constexpr std::uint32_t kPullMax = 1000;
constexpr std::uint32_t kHistoryDefault = 50;
constexpr std::uint32_t kHistoryMax = 500;
constexpr auto kCursorFlushInterval = std::chrono::seconds(1);

// Members the group cache keeps at most past a trim: 100,000, or the
// largest group twice over. With a million, the soak's made-up groups of
// 900 members kept filling it (glibc's in-use memory 289 MB -> 445 MB in
// 200 s of its probes).
std::size_t group_member_capacity(const Config& c) {
  return std::max<std::size_t>(100'000, 2 * std::size_t{c.limits.max_group_members});
}

// The conv_seqs a user deleted for themself in a conversation (PROTOCOL
// 8.3), read as a walk over its history reaches them: in chunks, in the
// walk's direction, within the walk's range. A HISTORY page reads the
// delete rows of the stretch it walks, never every row of the conversation.
class DeletedWalk {
 public:
  // The walk visits seqs of [from, to), ascending, or descending when `back`.
  DeletedWalk(store::Store& store, const std::string& uid, const std::string& conv, std::uint64_t from,
              std::uint64_t to, bool back)
      : store_(store), uid_(uid), conv_(conv), from_(from), to_(to), back_(back) {}

  // Whether `seq` was deleted; each call's seq is further along the walk.
  Result<bool> hidden(std::uint64_t seq) {
    for (;;) {
      while (pos_ < chunk_.size() && (back_ ? chunk_[pos_] > seq : chunk_[pos_] < seq)) ++pos_;
      if (pos_ < chunk_.size()) return chunk_[pos_] == seq;
      if (done_) return false;
      if (auto loaded = load(seq); !loaded) return loaded.error();
    }
  }

 private:
  static constexpr std::size_t kChunk = 256;

  // The next rows from `seq` on, in the walk's direction.
  Result<Ok> load(std::uint64_t seq) {
    chunk_.clear();
    pos_ = 0;
    if (back_) {
      to_ = std::min(to_, seq == UINT64_MAX ? seq : seq + 1);
    } else {
      from_ = std::max(from_, seq);
    }
    auto scanned = store_.scan_deleted(uid_, conv_, from_, to_, back_, [&](std::uint64_t s) {
      chunk_.push_back(s);
      return chunk_.size() < kChunk;
    });
    if (!scanned) return scanned.error();
    done_ = chunk_.size() < kChunk;
    if (done_) return Ok{};
    if (back_) {
      to_ = chunk_.back();
    } else {
      from_ = chunk_.back() + 1;
    }
    return Ok{};
  }

  store::Store& store_;
  const std::string& uid_;
  const std::string& conv_;
  std::uint64_t from_;
  std::uint64_t to_;
  const bool back_;
  std::vector<std::uint64_t> chunk_;
  std::size_t pos_ = 0;
  bool done_ = false;
};

// This shard's part of storage.dedupe_memory_entries; 0 (every SEND
// writes a dedupe row) also when the window outlives the inbox rows that
// would be the records.
std::uint64_t dedupe_memory_share(const Config& config) {
  const std::uint64_t total = config.storage.dedupe_memory_entries;
  if (std::uint64_t{config.storage.dedupe_window_s} > std::uint64_t{config.storage.inbox_retention_days} * 86400)
    return 0;
  return total == 0 ? 0 : std::max<std::uint64_t>(1, total / shard_count(config));
}

}  // namespace

Shard::Shard(unsigned index, CoreEnv& env, ShardLoop& loop)
    : index_(index),
      env_(env),
      loop_(loop),
      commit_(loop, env.store, index, index < env.logs.size() ? env.logs[index] : nullptr),
      convs_(env.store, env.config.sharding.cache_entries),
      groups_(env.store, env.config.sharding.cache_entries, group_member_capacity(env.config)),
      recent_(dedupe_memory_share(env.config), std::int64_t{env.config.storage.dedupe_window_s} * 1000),
      offline_(loop.context(), std::chrono::milliseconds(env.config.push.offline_delay_ms),
               [this](std::vector<OfflinePushes::Entry>& due) { fire_offline(due); }),
      users_(env.config.sharding.cache_entries),
      typing_(loop.context()),
      watches_(loop.context(),
               [this](const std::string& uid, const std::vector<const Watcher*>& to) { push_presence(uid, to); }) {
  commit_.on_written([this](bool ok) { on_written(ok); });
  commit_.on_idle([this] {
    if (users_.over() || convs_.over() || groups_.over()) trim_caches();
  });
  // The loop's last turn, after the last round (which wrote the cursors).
  loop_.on_stop([this] {
    offline_.cancel();
    typing_.cancel();
    watches_.cancel();
    cursor_timer_.cancel();
    overdue_timer_.cancel();
    commit_.log_stats();
  });
}

void Shard::start() {
  auto clock = MsgIdClock::open(index_, env_.store, log());
  if (!clock) throw std::runtime_error(fmt::format("shard {}: {}", index_, clock.error().message));
  clock_.emplace(std::move(*clock));
}

void Shard::request_stop() {
  if (stop_requested_.exchange(true)) return;
  asio::post(context(), [this] {
    flush_cursors();
    commit_.schedule();
  });
}

Error Shard::not_written(std::string_view what) const {
  Error e = commit_.last_error();
  if (e.code != StatusCode::kUnavailable) return make_error(StatusCode::kInternal, std::string(what));
  e.message = fmt::format("{}: {}", what, e.message);
  return e;
}

std::size_t Shard::frame_budget() const {
  return env_.config.server.max_frame_bytes - wire::kFrameSlack;
}

std::size_t Shard::max_row_bytes() const {
  return wire::max_row_bytes(frame_budget());
}

// ---------------------------------------------------------------- user state

Result<Shard::UserState*> Shard::user(const std::string& uid) {
  if (UserState* u = users_.find(uid)) return u;
  auto last = env_.store.last_inbox_seq(uid);
  if (!last) return last.error();
  UserState& u = users_.put(uid, UserState{});
  u.inbox_next = u.inbox_committed = *last;
  schedule_trim();
  return &u;
}

namespace {

std::string device_key(std::uint8_t device_type, const std::string& device_id) {
  std::string key(1, static_cast<char>(device_type));
  key += device_id;
  return key;
}

}  // namespace

Result<Ok> Shard::load_cursors(UserState& u, const std::string& uid) {
  if (u.cursors_loaded) return Ok{};
  SmallMap<DeviceCursor> loaded;
  auto scanned = env_.store.scan_cursors(uid, [&](const store::CursorRecord& r) {
    // One row per device: each key comes once, so no lookup first.
    loaded.emplace(device_key(r.device_type, r.device_id),
                   DeviceCursor{.acked = r.acked, .used_ms = r.used_ms, .dirty = false, .stored = true});
    return true;
  });
  if (!scanned) return scanned.error();
  u.cursors = std::move(loaded);
  u.cursors_loaded = true;
  return Ok{};
}

void Shard::evict_cursors(UserState& u, const std::string& uid, const std::string& keep, std::size_t room) {
  const std::size_t limit = env_.config.limits.devices_per_user;
  if (u.cursors.size() + room <= limit) return;
  // Least recently used first, sorted once (rows written under a larger
  // limit may be many); never the device being looked up nor one with a
  // live session (so the bound may be passed by the live device types).
  std::vector<std::pair<std::int64_t, std::string>> candidates;
  for (const auto& entry : u.cursors) {
    const std::string& key = entry.first;  // not a structured binding: clang 14 cannot capture one
    if (key == keep) continue;
    const std::uint64_t session = entry.second.session_id;
    const bool live = session != 0 && std::any_of(u.sessions.begin(), u.sessions.end(),
                                                  [&](const SessionRef& s) { return s.session_id == session; });
    if (!live) candidates.emplace_back(entry.second.used_ms, key);
  }
  std::sort(candidates.begin(), candidates.end());
  for (const auto& [used, key] : candidates) {
    if (u.cursors.size() + room <= limit) break;
    forget_cursor(u, uid, key);
  }
}

void Shard::forget_cursor(UserState& u, const std::string& uid, const std::string& key) {
  auto it = u.cursors.find(key);
  if (it == u.cursors.end()) return;
  if (it->second.stored || it->second.dirty) {
    commit_.batch().del_cursor(uid, static_cast<std::uint8_t>(key[0]), std::string_view(key).substr(1));
    commit_.schedule();
  }
  u.cursors.erase(it);
  metrics::get().cursors_evicted.inc();
}

Result<Shard::DeviceCursor*> Shard::cursor(UserState& u, const std::string& uid, std::uint8_t device_type,
                                           const std::string& device_id) {
  if (auto loaded = load_cursors(u, uid); !loaded) return loaded.error();
  const std::string key = device_key(device_type, device_id);
  const bool known = u.cursors.find(key) != u.cursors.end();
  // Too many (rows written under a larger limit), or a new device: the
  // least recently used go (a sort of at most devices_per_user entries,
  // only then). Evicting moves entries: the device is looked up after.
  evict_cursors(u, uid, key, known ? 0 : 1);
  auto it = known ? u.cursors.find(key) : u.cursors.emplace(key, DeviceCursor{});
  it->second.used_ms = wall_ms();
  return &it->second;
}

std::uint64_t Shard::max_acked(const UserState& u) {
  std::uint64_t max = 0;
  for (const auto& [key, c] : u.cursors) max = std::max(max, c.acked);
  return max;
}

void Shard::mark_dirty(const std::string& uid, UserState& u) {
  if (!u.cursors_dirty) {
    u.cursors_dirty = true;
    dirty_cursors_.emplace_back(users_.key_of(uid), &u);
  }
  arm_cursor_timer();
}

void Shard::mark_cursor(const std::string& uid, UserState& u, DeviceCursor& c, std::uint64_t seq) {
  if (seq > c.acked) {
    c.acked = seq;
    c.dirty = true;
    mark_dirty(uid, u);
  }
}

void Shard::flush_cursors() {
  flush_books();
  // Only the users with something to write: a disconnect calls this, and a
  // walk over every cached user would make a mass disconnect quadratic.
  if (dirty_cursors_.empty()) return;
  struct Written {
    std::string uid;
    std::string device;
  };
  std::vector<Written> written;
  for (auto [uid, u] : dirty_cursors_) {
    u->cursors_dirty = false;
    for (auto& [key, c] : u->cursors) {
      if (!c.dirty) continue;
      commit_.batch().put_cursor(
          *uid, store::CursorRecord{static_cast<std::uint8_t>(key[0]), key.substr(1), c.acked, c.used_ms});
      c.dirty = false;
      c.stored = true;
      written.push_back({*uid, key});
    }
  }
  dirty_cursors_.clear();
  // A failed batch leaves these cursors to write again (those still kept).
  commit_.after_commit([this, written = std::move(written)](bool ok) {
    if (ok) return;
    for (const Written& w : written) {
      UserState* u = users_.find(w.uid);
      if (!u) continue;
      auto c = u->cursors.find(w.device);
      if (c == u->cursors.end() || c->second.dirty) continue;
      c->second.dirty = true;
      mark_dirty(w.uid, *u);
    }
  });
  commit_.schedule();
}

void Shard::arm_cursor_timer() {
  if (cursor_timer_armed_) return;
  cursor_timer_armed_ = true;
  cursor_timer_.expires_after(kCursorFlushInterval);
  cursor_timer_.async_wait([this](const asio::error_code& ec) {
    cursor_timer_armed_ = false;
    if (!ec) flush_cursors();
  });
}

// ---------------------------------------------------------------- sessions

Result<Shard::LoginState> Shard::add_session(const std::string& uid, SessionRef session, const std::string& device_id) {
  if (session.session_id == 0) return make_error(StatusCode::kInternal, "session id 0");  // SessionList's empty mark
  auto u = user(uid);
  if (!u) return u.error();
  auto c = cursor(**u, uid, session.device_type, device_id);
  if (!c) return c.error();
  // A known device's new last use is written (it orders the devices for
  // eviction across restarts), coalesced with the cursor writes, once a
  // second at most. A new device is written when its cursor first moves (an
  // ACK, or a PULL that acknowledges): a cursor at 0 that a restart forgets
  // starts from 0 all the same, and a row per login of a fresh device cost
  // 190 B of memtable per idle connection (bench/ANALYSIS.md, W1). While
  // its user is cached it counts among the devices like any other; after a
  // restart it no longer takes a place (docs/architecture.md, Departures).
  if ((*c)->stored && !(*c)->dirty) {
    (*c)->dirty = true;
    mark_dirty(uid, **u);
  }
  LoginState state;
  state.inbox_max_seq = (*u)->inbox_committed;
  state.acked_seq = (*c)->acked;
  auto& sessions = (*u)->sessions;
  auto same = std::find_if(sessions.begin(), sessions.end(),
                           [&](const SessionRef& s) { return s.device_type == session.device_type; });
  if (same != sessions.end()) {
    state.replaced = std::move(*same);
    sessions.erase(same);
  }
  (*c)->session_id = session.session_id;
  const bool first = sessions.empty() && !state.replaced;
  sessions.push_back(std::move(session));
  if (first) index_large_groups(uid);
  if (!state.replaced) presence_changed(uid);  // a replaced session leaves the device set as it was
  return state;
}

void Shard::remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms) {
  UserState* u = users_.find(uid);
  if (!u) return;
  auto& sessions = u->sessions;
  auto s =
      std::find_if(sessions.begin(), sessions.end(), [&](const SessionRef& r) { return r.session_id == session_id; });
  if (s == sessions.end()) return;
  sessions.erase(s);
  if (sessions.empty()) {
    last_seen_[uid] = now_ms;
    unindex_large_groups(uid);
    schedule_trim();
  }
  presence_changed(uid);
  flush_cursors();
}

std::vector<SessionRef> Shard::take_sessions(const std::string& uid, std::int64_t now_ms) {
  UserState* u = users_.find(uid);
  if (!u || u->sessions.empty()) return {};
  std::vector<SessionRef> out = u->sessions.take();
  unindex_large_groups(uid);
  last_seen_[uid] = now_ms;
  presence_changed(uid);
  flush_cursors();
  schedule_trim();
  return out;
}

void Shard::fill_presence(v1::Presence& p) const {
  if (auto seen = last_seen_.find(p.uid()); seen != last_seen_.end()) p.set_last_seen_ms(seen->second);
  const UserState* u = users_.peek(p.uid());
  if (!u) return;
  p.set_online(!u->sessions.empty());
  std::vector<std::uint8_t> devices;
  for (const SessionRef& s : u->sessions) devices.push_back(s.device_type);
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  for (std::uint8_t d : devices) p.add_devices(static_cast<v1::DeviceType>(d));
}

// ---------------------------------------------------------------- reads

Shard::DeviceCursor* Shard::session_cursor(UserState& u, std::uint64_t session_id) {
  if (session_id == 0) return nullptr;
  for (auto& [key, c] : u.cursors) {
    if (c.session_id == session_id) {
      c.used_ms = wall_ms();
      return &c;
    }
  }
  return nullptr;
}

Result<Ok> Shard::ack(const std::string& uid, std::uint64_t session_id, std::uint64_t seq) {
  auto u = user(uid);
  if (!u) return u.error();
  if (seq > (*u)->inbox_committed) return make_error(StatusCode::kBadRequest, "inbox_seq is beyond the inbox");
  if (DeviceCursor* c = session_cursor(**u, session_id)) mark_cursor(uid, **u, *c, seq);
  return Ok{};
}

Result<std::string> Shard::pull(const std::string& uid, std::uint64_t session_id, const v1::PullReq& req) {
  auto u = user(uid);
  if (!u) return u.error();
  const std::uint64_t committed = (*u)->inbox_committed;
  auto page = inbox_page(uid, committed, req);
  if (!page) return page.error();
  // Only a PULL that is answered acknowledges `after_seq`.
  if (auto acked = ack(uid, session_id, std::min(req.after_seq(), committed)); !acked) return acked.error();
  return page;
}

Result<std::string> Shard::inbox_page(const std::string& uid, const v1::PullReq& req) {
  auto u = user(uid);
  if (!u) return u.error();
  return inbox_page(uid, (*u)->inbox_committed, req);
}

// Readers never look past the committed seq: no gap is ever visible.
Result<std::string> Shard::inbox_page(const std::string& uid, std::uint64_t committed, const v1::PullReq& req) {
  const std::uint32_t limit = req.limit() == 0 ? kPullDefault : std::min(req.limit(), kPullMax);
  wire::MessageRows rows(frame_budget());
  std::uint64_t last = req.after_seq();
  if (req.after_seq() < committed) {
    Result<Ok> changes_read = Ok{};
    std::string changed;
    bool stopped = false;
    auto scanned =
        env_.store.scan_inbox(uid, req.after_seq() + 1, committed + 1, [&](std::uint64_t seq, std::string_view row) {
          if (rows.count() == limit) {
            stopped = true;
            return false;
          }
          // A copy of a recalled or edited message, as it now is.
          auto now = env_.changes.changed_row(row);
          if (!now) {
            changes_read = now.error();
            return false;
          }
          if (*now) {
            changed = std::move(**now);
            row = changed;
          }
          if (!rows.fits(row)) {
            if (!rows.empty()) {
              stopped = true;
              return false;
            }
            // A row no answer can carry (stored under a larger frame limit):
            // skipped, or this inbox would stall here for good.
            spdlog::warn("shard {}: inbox row {} of {} ({} bytes) does not fit a frame; skipped", index_, seq, uid,
                         row.size());
            last = seq;
            return true;
          }
          rows.add(row);
          last = seq;
          return true;
        });
    if (!scanned) return scanned.error();
    if (!changes_read) return changes_read.error();
    // Read to the end: the rows after `last` were all skipped (references
    // whose history rows expired), so there is no more.
    if (!stopped) last = committed;
  }
  auto oldest = env_.store.first_inbox_seq(uid);
  if (!oldest) return oldest.error();
  return wire::pull_resp(std::move(rows), last < committed, committed, *oldest);
}

std::string_view Shard::search_text_of(const SendJob& job, const v1::Message& m) const {
  if (!env_.search || m.content_type() >= 10000) return {};
  return job.search_text;
}

bool Shard::searchable(const v1::Message& m, std::string_view search_text) const {
  if (!env_.search) return false;
  const std::uint32_t type = m.content_type();
  if (type == 10003 || type == 10004) return true;  // a recall or an edit: its target's document changes
  if (type >= 10000) return false;
  const auto& listed = env_.config.search.text_content_types;
  return !search_text.empty() || std::find(listed.begin(), listed.end(), type) != listed.end();
}

Result<std::string> Shard::history(const std::string& uid, const std::string& conv, const v1::HistoryReq& req) {
  auto last = convs_.committed(conv);
  if (!last) return last.error();
  const std::uint64_t committed = *last;
  const std::uint32_t limit = req.limit() == 0 ? kHistoryDefault : std::min(req.limit(), kHistoryMax);
  // What the user deleted for themself is not shown (PROTOCOL 8.3); the
  // rows are read from the store, durable before DELETE answered: nothing
  // at or below cleared_seq is walked, and the rows of single seqs are read
  // as the walk reaches them.
  auto cleared = env_.store.get_cleared(uid, conv);
  if (!cleared) return cleared.error();
  const std::uint64_t shown_from = *cleared == UINT64_MAX ? *cleared : *cleared + 1;
  Result<Ok> read = Ok{};
  wire::MessageRows probe(frame_budget());
  std::vector<std::string> rows;
  bool has_more = false;
  // Adds one row unless the answer is full; false to stop.
  auto take = [&](DeletedWalk& deleted, std::uint64_t seq, std::string_view row) {
    auto hidden = deleted.hidden(seq);
    if (!hidden) {
      read = hidden.error();
      return false;
    }
    if (*hidden) return true;
    if (!probe.fits(row) && rows.empty()) {
      // Stored under a larger frame limit: skipped (see pull).
      spdlog::warn("shard {}: history row {} of {} ({} bytes) does not fit a frame; skipped", index_, seq, conv,
                   row.size());
      return true;
    }
    if (rows.size() == limit || !probe.fits(row)) {
      has_more = true;
      return false;
    }
    probe.add(row);
    rows.emplace_back(row);
    return true;
  };
  wire::MessageRows body(frame_budget());
  if (req.after_seq() > 0) {
    // Forward: the oldest rows above after_seq, oldest first.
    const std::uint64_t from = std::max(req.after_seq(), *cleared) + 1;
    if (req.after_seq() < committed && *cleared < committed) {
      DeletedWalk deleted(env_.store, uid, conv, from, committed + 1, false);
      auto scanned = env_.store.scan_history(
          conv, from, committed + 1, [&](std::uint64_t seq, std::string_view row) { return take(deleted, seq, row); });
      if (!scanned) return scanned.error();
      if (!read) return read.error();
    }
    for (const auto& row : rows) body.add(row);
    return wire::history_resp(std::move(body), has_more);
  }
  // Backward: read newest first, answered oldest first; nothing at or
  // below cleared_seq is ever shown, so the walk stops there.
  const std::uint64_t top = req.before_seq() == 0 ? committed + 1 : std::min(req.before_seq(), committed + 1);
  DeletedWalk deleted(env_.store, uid, conv, shown_from, top, true);
  auto scanned = env_.store.scan_history_back(conv, top, [&](std::uint64_t seq, std::string_view row) {
    if (seq < shown_from) return false;
    return take(deleted, seq, row);
  });
  if (!scanned) return scanned.error();
  if (!read) return read.error();
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) body.add(*it);
  return wire::history_resp(std::move(body), has_more);
}

Result<std::string> Shard::group_history(const std::string& uid, const std::string& gid, const v1::HistoryReq& req) {
  if (groups_.changed_in_batch(gid)) commit_.commit();
  auto g = groups_.find(gid);
  if (!g) return g.error();
  schedule_trim();
  if (auto access = check_access(*g, GroupActor{uid, false}); !access) return access.error();
  return history(uid, store::group_conv(gid), req);
}

// ---------------------------------------------------------------- after a batch

void Shard::on_written(bool ok) {
  ConvCounters::Committed committed;
  convs_.on_written(ok, env_.search ? &committed : nullptr);
  // Conversations whose rows hold nothing to index move the index's mark
  // only (search::ShardIndexer::notify).
  if (!committed.empty()) env_.search->shard(index_).notify(std::move(committed));
  groups_.on_written(ok);
  auto users = std::move(touched_users_);
  auto pushes = std::move(pushes_);
  auto offline = std::move(new_offline_);
  auto book_rows = std::move(book_rows_);
  auto new_sends = std::move(new_sends_);
  new_sends_.clear();
  new_send_hashes_.clear();
  touched_users_.clear();
  pushes_.clear();
  new_offline_.clear();
  book_rows_.clear();
  rewritten_in_batch_.clear();
  if (!ok) {
    for (UserState* u : users) u->inbox_next = u->inbox_committed;
    return;
  }
  for (UserState* u : users) u->inbox_committed = u->inbox_next;
  for (const NewSend& n : new_sends) {
    if (recent_.add(*n.uid, n.hash, n.inbox_seq, n.time_ms) != RecentSends::Added::kTaken) continue;
    // Not expected: stage_inbox checked the hash against the window and the
    // batch. Should it happen, the dedupe row goes in the next batch.
    auto row = sender_row(*n.uid, n.inbox_seq);
    if (!row || !*row) {
      spdlog::error("shard {}: {}'s message at inbox_seq {} has no dedupe record", index_, *n.uid, n.inbox_seq);
      continue;
    }
    commit_.batch().put_dedupe(*n.uid, (*row)->client_msg_id(),
                               {(*row)->msg_id(), (*row)->conv_seq(), n.inbox_seq, (*row)->server_time_ms()});
    metrics::get().dedupe_rows.inc();
    commit_.schedule();
  }
  if (!new_sends.empty()) recent_.expire(wall_ms());
  for (const BookRow& b : book_rows) {
    if (!b.user->book) continue;
    b.user->book->apply(*b.uid, b.row);
    mark_book_dirty(*b.uid, *b.user);
  }
  deliver_pushes(pushes);
  // A user with an offline_push timer running stays cached: the timer
  // needs its cursors.
  for (const auto& e : offline)
    if (UserState* u = users_.find(e.uid)) ++u->offline_pending;
  offline_.add(offline);
}

void Shard::schedule_trim() {
  if (trim_posted_ || !(users_.over() || convs_.over() || groups_.over())) return;
  trim_posted_ = true;
  asio::post(context(), [this] {
    trim_posted_ = false;
    trim_caches();
  });
}

void Shard::trim_caches() {
  // With rows staged, pointers into the caches are held (the batch's pushes
  // and touched entries): the trim waits for the batch (GroupCommit's idle hook).
  if (!commit_.idle() || hold_users_) return;
  std::size_t dropped = users_.trim([](const std::string&, const UserState& u) {
    return u.sessions.empty() && !u.cursors_dirty && !u.book_listed && u.offline_pending == 0;
  });
  dropped += convs_.trim();
  dropped += groups_.trim();
  metrics::get().cache_evictions.inc(dropped);
}

void Shard::deliver_pushes(std::vector<Push>& pushes) {
  // Per user, the rows of this batch in seq order go out as one PUSH frame
  // (or as few as fit), encoded once and shared by every session that gets
  // the same rows. Only a sender's own sessions get a different set.
  std::vector<UserState*> order;
  std::unordered_map<UserState*, std::vector<const Push*>> rows_of;
  for (const Push& p : pushes) {
    auto& rows = rows_of[p.user];
    if (rows.empty()) order.push_back(p.user);
    rows.push_back(&p);
  }
  // The sender's copy of a SEND is held back from the sending session, which
  // gets its inbox_seq in the SendResp: from an after-commit callback of
  // this same batch, or, for a C2C SEND whose recipient is on another
  // shard, once that shard has written the recipient's row (a later row of
  // the sender's may be pushed in between; the SendResp fills the gap).
  // Unless that SEND was answered already (only an error can come first:
  // the overdue sweep's UNAVAILABLE, while a write was stalled; a retry
  // with the same client_msg_id then learns its ids): then the session was
  // told nothing and gets the PUSH like any other. `answered` is the
  // sender's shard's, and so is the sender's copy.
  auto excluded_of = [](const Push& p) -> std::uint64_t {
    return p.sender_job && !p.sender_job->answered ? p.sender_job->session_id : 0;
  };
  auto frames_for = [this, &excluded_of](const std::vector<const Push*>& rows, std::uint64_t session) {
    std::vector<std::string_view> bodies;
    for (const Push* p : rows)
      if (session == 0 || excluded_of(*p) != session) bodies.push_back(p->row);
    return wire::push_frames(bodies, frame_budget(), [this] { return env_.next_push_seq(); });
  };
  for (UserState* u : order) {
    if (u->sessions.empty()) continue;
    const auto& rows = rows_of[u];
    const bool any_excluded =
        std::any_of(rows.begin(), rows.end(), [&](const Push* p) { return excluded_of(*p) != 0; });
    const auto shared = any_excluded ? std::vector<net::SharedFrame>{} : frames_for(rows, 0);
    for (const SessionRef& s : u->sessions) {
      auto conn = s.conn.lock();
      if (!conn) continue;
      const auto frames = any_excluded ? frames_for(rows, s.session_id) : shared;
      for (const auto& f : frames) net::send_from_any_thread(conn, f);
      metrics::get().pushes.inc(frames.size());
    }
  }
}

// ---------------------------------------------------------------- business integration

void Shard::server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                        PushDone done) {
  commit_.make_room();
  auto id = clock_->next();
  if (!id) return done(id.error());
  if (!persist) {
    v1::ServerPush push;
    push.set_push_id(*id);
    push.set_topic(topic);
    push.set_payload(payload);
    push.set_server_time_ms(wall_ms());
    FrameHeader h;
    h.cmd = Cmd::kServerPush;
    h.seq = env_.next_push_seq();
    auto frame = net::make_frame(h, &push);
    std::uint32_t sent = 0;
    if (UserState* online = users_.find(uid)) {  // a user with a session is always cached
      for (const SessionRef& s : online->sessions) {
        if (auto conn = s.conn.lock()) {
          net::send_from_any_thread(conn, frame);
          ++sent;
        }
      }
    }
    return done(std::pair{*id, sent});
  }
  // Stored: a SYSTEM message in the user's own conversation and inbox,
  // delivered (PUSH) and pulled like any message.
  auto u = user(uid);
  if (!u) return done(u.error());
  const auto online = static_cast<std::uint32_t>((*u)->sessions.size());
  const std::string conv = store::system_conv(uid);
  auto counter = convs_.get(conv);
  if (!counter) return done(counter.error());
  v1::Message m;
  m.set_msg_id(*id);
  m.set_conv_type(v1::SYSTEM);
  m.set_to(uid);
  m.set_content_type(10002);
  m.set_topic(topic);
  m.set_body(payload);
  m.set_server_time_ms(wall_ms());
  m.set_conv_seq(convs_.assign(**counter));
  commit_.batch().put_history(conv, m.conv_seq(), m.SerializeAsString());
  ++commit_.staged().history;
  (void)stage_inbox(uid, m, conv, false, nullptr);  // the user is loaded: it cannot fail
  commit_.after_commit([this, done = std::move(done), id = *id, online](bool ok) {
    if (ok) return done(std::pair{id, online});
    done(not_written("the push could not be stored"));
  });
  commit_.schedule();
}

void Shard::queue_report(const std::string& uid, std::uint8_t device_type, const v1::ReportReq& report,
                         std::function<void(const Result<Ok>&)> done) {
  // The event's id is also its outbox key: stable across retries, unique
  // across restarts (a msg_id), and increasing per user (a user's events
  // all come from this shard, into this shard's queue).
  store::Outbox outbox(env_.store);
  if (!outbox.reserve(env_.config.webhook.max_queued)) {
    // Room comes back only as the receiver takes events, so a full queue
    // means it is down or far behind: 15 to 30 s (the worker's longest
    // backoff), jittered so that refused clients do not come back together.
    thread_local std::minstd_rand rng{std::random_device{}()};
    Error full = make_error(StatusCode::kUnavailable, "the webhook queue is full");
    full.retry_after_ms = 15000 + static_cast<std::uint32_t>(rng() % 15001);
    return done(full);
  }
  commit_.make_room();
  auto id = clock_->next();
  if (!id) {
    outbox.release(1);
    return done(id.error());
  }
  store::OutboxEvent event = report_event(*id, wall_ms(), uid, device_type, report);
  event.queue = static_cast<std::uint8_t>(index_);
  store::Outbox::push(commit_.batch(), event);
  commit_.after_commit([this, outbox, done = std::move(done)](bool ok) mutable {
    if (ok) {
      metrics::get().reports_queued.inc();
      return done(Ok{});
    }
    outbox.release(1);
    done(not_written("the report could not be queued"));
  });
  commit_.schedule();
}

void Shard::fire_offline(std::vector<OfflinePushes::Entry>& due) {
  // Whether each user muted the conversation (PROTOCOL 8.1): from the
  // user's book when it is loaded, else from the one settings row that
  // CONV_UPDATE writes with its mark (offline users are the ones whose
  // books are usually not loaded: a load per push would read every
  // conversation of each). A row that cannot be read counts as not muted.
  std::vector<bool> muted(due.size(), false);
  for (std::size_t i = 0; i < due.size(); ++i) {
    auto& e = due[i];
    UserState* u = users_.find(e.uid);
    if (u && max_acked(*u) >= e.inbox_seq) continue;
    // Recalled or edited since it was written: a recalled one fires
    // nothing (no event does), an edited one with its latest body.
    if (auto changed = env_.changes.apply(e.msg); changed && *changed) OfflinePushes::cut_body(e.msg);
    const std::string conv = conv_of_row(e.uid, e.msg);
    if (u && u->book) {
      if (const ConvBook::Entry* c = u->book->find(conv)) muted[i] = c->rec.muted;
      continue;
    }
    auto settings = env_.store.get_conv_settings(e.uid, conv);
    if (settings && *settings) muted[i] = (*settings)->muted;
  }
  commit_.make_room();
  store::Outbox outbox(env_.store);
  std::uint64_t queued = 0;
  std::uint64_t full = 0;
  for (std::size_t i = 0; i < due.size(); ++i) {
    const auto& e = due[i];
    UserState* u = users_.find(e.uid);
    if (u && u->offline_pending > 0) --u->offline_pending;
    if (u && max_acked(*u) >= e.inbox_seq) continue;
    if (e.msg.content_type() >= 10000) continue;
    if (!outbox.reserve(env_.config.webhook.max_queued)) {
      metrics::get().offline_pushes_dropped.inc();
      ++full;
      continue;
    }
    auto id = clock_->next();
    if (!id) {
      outbox.release(1);
      spdlog::error("shard {}: offline_push for {} dropped: {}", index_, e.uid, id.error().message);
      continue;
    }
    store::OutboxEvent event = offline_push_event(*id, wall_ms(), e.uid, e.msg, muted[i]);
    event.queue = static_cast<std::uint8_t>(index_);
    store::Outbox::push(commit_.batch(), event);
    ++queued;
  }
  if (full > 0) {
    // Counted in /metrics each; logged at most every 10 s by all shards.
    static std::atomic<std::int64_t> last_log_ms{0};
    const std::int64_t now = wall_ms();
    std::int64_t last = last_log_ms.load(std::memory_order_relaxed);
    if (now - last >= 10000 && last_log_ms.compare_exchange_strong(last, now))
      spdlog::warn("shard {}: {} offline_push events dropped: the webhook queue is full (webhook.max_queued {})",
                   index_, full, env_.config.webhook.max_queued);
  }
  if (queued == 0) return;
  commit_.after_commit([outbox, queued](bool ok) mutable {
    if (ok) return metrics::get().offline_pushes_queued.inc(queued);
    outbox.release(queued);
  });
  commit_.schedule();
}

}  // namespace im::core
