// Shard, part one: the loop, the user state (sessions, presence, cursors,
// inbox counters), reads, and what happens when a batch is written. The
// send path is in shard_send.cpp, the groups in shard_groups.cpp.

#include "core/shard.h"

#include <algorithm>
#include <stdexcept>

#include <spdlog/spdlog.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>

#include "common/clock.h"
#include "common/metrics.h"
#include "core/outbox_events.h"
#include "core/wire.h"
#include "net/frames.h"
#include "store/conv_id.h"
#include "store/outbox.h"

namespace im::core {
namespace {

constexpr std::uint32_t kPullDefault = 100;
constexpr std::uint32_t kPullMax = 1000;
constexpr std::uint32_t kHistoryDefault = 50;
constexpr std::uint32_t kHistoryMax = 500;
constexpr auto kCursorFlushInterval = std::chrono::seconds(1);

}  // namespace

Shard::Shard(unsigned index, CoreEnv& env)
    : index_(index),
      env_(env),
      commit_(context_, env.store, index),
      convs_(env.store),
      groups_(env.store),
      offline_(context_, std::chrono::milliseconds(env.config.push.offline_delay_ms),
               [this](std::vector<OfflinePushes::Entry>& due) { fire_offline(due); }) {
  commit_.on_written([this](bool ok) { on_written(ok); });
}

Shard::~Shard() {
  stop();
}

void Shard::start() {
  auto clock = MsgIdClock::open(index_, env_.store);
  if (!clock) throw std::runtime_error(fmt::format("shard {}: {}", index_, clock.error().message));
  clock_.emplace(std::move(*clock));
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
}

void Shard::stop() {
  if (!thread_.joinable()) return;
  asio::post(context_, [this] {
    flush_cursors();
    commit_.commit();
    offline_.cancel();
    cursor_timer_.cancel();
    overdue_timer_.cancel();
    commit_.log_stats();
    context_.stop();
  });
  thread_.join();
}

std::size_t Shard::frame_budget() const {
  return env_.config.server.max_frame_bytes - wire::kFrameSlack;
}

// ---------------------------------------------------------------- user state

Result<Shard::UserState*> Shard::user(const std::string& uid) {
  if (auto it = users_.find(uid); it != users_.end()) return &it->second;
  auto last = env_.store.last_inbox_seq(uid);
  if (!last) return last.error();
  UserState& u = users_[uid];
  u.inbox_next = u.inbox_committed = *last;
  return &u;
}

Result<Shard::DeviceCursor*> Shard::cursor(UserState& u, const std::string& uid, std::uint8_t device_type,
                                           const std::string& device_id) {
  for (DeviceCursor& c : u.cursors)
    if (c.device_type == device_type && c.device_id == device_id) return &c;
  auto stored = env_.store.get_cursor(uid, device_type, device_id);
  if (!stored) return stored.error();
  u.cursors.push_back(DeviceCursor{device_type, device_id, stored->value_or(0), false});
  return &u.cursors.back();
}

void Shard::mark_cursor(const std::string& uid, UserState& u, DeviceCursor& c, std::uint64_t seq) {
  if (seq > c.acked) {
    c.acked = seq;
    c.dirty = true;
    if (!u.cursors_dirty) {
      u.cursors_dirty = true;
      dirty_cursors_.emplace_back(&users_.find(uid)->first, &u);
    }
    arm_cursor_timer();
  }
  u.max_acked = std::max(u.max_acked, seq);
}

void Shard::flush_cursors() {
  // Only the users with something to write: a disconnect calls this, and a
  // walk over every cached user would make a mass disconnect quadratic.
  if (dirty_cursors_.empty()) return;
  struct Written {
    const std::string* uid;
    UserState* user;
    std::uint8_t device_type;
    std::string device_id;
    std::uint64_t acked;
  };
  std::vector<Written> written;
  for (auto [uid, u] : dirty_cursors_) {
    u->cursors_dirty = false;
    for (DeviceCursor& c : u->cursors) {
      if (!c.dirty) continue;
      commit_.batch().put_cursor(*uid, c.device_type, c.device_id, c.acked);
      c.dirty = false;
      written.push_back({uid, u, c.device_type, c.device_id, c.acked});
    }
  }
  dirty_cursors_.clear();
  // A failed batch leaves these cursors to write again.
  commit_.after_commit([this, written = std::move(written)](bool ok) {
    if (ok) return;
    for (const Written& w : written) {
      for (DeviceCursor& c : w.user->cursors) {
        if (c.device_type != w.device_type || c.device_id != w.device_id || c.dirty) continue;
        c.dirty = true;
        if (!w.user->cursors_dirty) {
          w.user->cursors_dirty = true;
          dirty_cursors_.emplace_back(w.uid, w.user);
        }
      }
    }
    arm_cursor_timer();
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

Result<Shard::LoginState> Shard::add_session(const std::string& uid, SessionRef session) {
  auto u = user(uid);
  if (!u) return u.error();
  auto c = cursor(**u, uid, session.device_type, session.device_id);
  if (!c) return c.error();
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
  sessions.push_back(std::move(session));
  return state;
}

void Shard::remove_session(const std::string& uid, std::uint64_t session_id, std::int64_t now_ms) {
  auto it = users_.find(uid);
  if (it == users_.end()) return;
  auto& sessions = it->second.sessions;
  auto s =
      std::find_if(sessions.begin(), sessions.end(), [&](const SessionRef& r) { return r.session_id == session_id; });
  if (s == sessions.end()) return;
  sessions.erase(s);
  if (sessions.empty()) {
    it->second.last_seen_ms = now_ms;
    std::vector<SessionRef>().swap(sessions);
  }
  flush_cursors();
}

std::vector<SessionRef> Shard::take_sessions(const std::string& uid, std::int64_t now_ms) {
  auto it = users_.find(uid);
  if (it == users_.end() || it->second.sessions.empty()) return {};
  std::vector<SessionRef> out = std::move(it->second.sessions);
  it->second.sessions.clear();
  it->second.last_seen_ms = now_ms;
  flush_cursors();
  return out;
}

void Shard::fill_presence(v1::Presence& p) const {
  auto it = users_.find(p.uid());
  if (it == users_.end()) return;
  const UserState& u = it->second;
  p.set_online(!u.sessions.empty());
  p.set_last_seen_ms(u.last_seen_ms);
  std::vector<std::uint8_t> devices;
  for (const SessionRef& s : u.sessions) devices.push_back(s.device_type);
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  for (std::uint8_t d : devices) p.add_devices(static_cast<v1::DeviceType>(d));
}

// ---------------------------------------------------------------- reads

Result<Ok> Shard::ack(const std::string& uid, std::uint8_t device_type, const std::string& device_id,
                      std::uint64_t seq) {
  auto u = user(uid);
  if (!u) return u.error();
  if (seq > (*u)->inbox_committed) return make_error(StatusCode::kBadRequest, "inbox_seq is beyond the inbox");
  auto c = cursor(**u, uid, device_type, device_id);
  if (!c) return c.error();
  mark_cursor(uid, **u, **c, seq);
  return Ok{};
}

Result<std::string> Shard::pull(const std::string& uid, std::uint8_t device_type, const std::string& device_id,
                                const v1::PullReq& req) {
  auto u = user(uid);
  if (!u) return u.error();
  // Readers never look past the committed seq: no gap is ever visible.
  const std::uint64_t committed = (*u)->inbox_committed;
  const std::uint32_t limit = req.limit() == 0 ? kPullDefault : std::min(req.limit(), kPullMax);
  wire::MessageRows rows(frame_budget());
  std::uint64_t last = req.after_seq();
  if (req.after_seq() < committed) {
    auto scanned =
        env_.store.scan_inbox(uid, req.after_seq() + 1, committed + 1, [&](std::uint64_t seq, std::string_view row) {
          if (rows.count() == limit || !rows.fits(row)) return false;
          rows.add(row);
          last = seq;
          return true;
        });
    if (!scanned) return scanned.error();
  }
  auto oldest = env_.store.first_inbox_seq(uid);
  if (!oldest) return oldest.error();
  // Only a PULL that is answered acknowledges `after_seq`.
  if (auto acked = ack(uid, device_type, device_id, std::min(req.after_seq(), committed)); !acked) return acked.error();
  return wire::pull_resp(std::move(rows), last < committed, committed, *oldest);
}

Result<std::string> Shard::history(const std::string& conv, const v1::HistoryReq& req) {
  auto c = convs_.get(conv);
  if (!c) return c.error();
  const std::uint64_t committed = (*c)->committed;
  const std::uint64_t top = req.before_seq() == 0 ? committed + 1 : std::min(req.before_seq(), committed + 1);
  const std::uint32_t limit = req.limit() == 0 ? kHistoryDefault : std::min(req.limit(), kHistoryMax);
  // Read newest first, answered oldest first.
  wire::MessageRows probe(frame_budget());
  std::vector<std::string> rows;
  bool has_more = false;
  auto scanned = env_.store.scan_history_back(conv, top, [&](std::uint64_t, std::string_view row) {
    if (rows.size() == limit || !probe.fits(row)) {
      has_more = true;
      return false;
    }
    probe.add(row);
    rows.emplace_back(row);
    return true;
  });
  if (!scanned) return scanned.error();
  wire::MessageRows body(frame_budget());
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) body.add(*it);
  return wire::history_resp(std::move(body), has_more);
}

Result<std::string> Shard::group_history(const std::string& uid, const std::string& gid, const v1::HistoryReq& req) {
  if (groups_.changed_in_batch(gid)) commit_.commit();
  auto g = groups_.find(gid);
  if (!g) return g.error();
  if (auto access = check_access(*g, GroupActor{uid, false}); !access) return access.error();
  return history(store::group_conv(gid), req);
}

// ---------------------------------------------------------------- after a batch

void Shard::on_written(bool ok) {
  convs_.on_written(ok);
  groups_.on_written(ok);
  auto users = std::move(touched_users_);
  auto pushes = std::move(pushes_);
  auto offline = std::move(new_offline_);
  touched_users_.clear();
  pushes_.clear();
  new_offline_.clear();
  if (!ok) {
    for (UserState* u : users) u->inbox_next = u->inbox_committed;
    return;
  }
  for (UserState* u : users) u->inbox_committed = u->inbox_next;
  deliver_pushes(pushes);
  offline_.add(offline);
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
  auto frames_for = [this](const std::vector<const Push*>& rows, std::uint64_t excluded) {
    std::vector<std::string_view> bodies;
    for (const Push* p : rows)
      if (excluded == 0 || p->exclude_session != excluded) bodies.push_back(p->row);
    return wire::push_frames(bodies, frame_budget(), [this] { return env_.next_push_seq(); });
  };
  for (UserState* u : order) {
    if (u->sessions.empty()) continue;
    const auto& rows = rows_of[u];
    const bool any_excluded =
        std::any_of(rows.begin(), rows.end(), [](const Push* p) { return p->exclude_session != 0; });
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
  auto u = user(uid);
  if (!u) return done(u.error());
  auto id = clock_->next();
  if (!id) return done(id.error());
  const auto online = static_cast<std::uint32_t>((*u)->sessions.size());
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
    for (const SessionRef& s : (*u)->sessions) {
      if (auto conn = s.conn.lock()) {
        net::send_from_any_thread(conn, frame);
        ++sent;
      }
    }
    return done(std::pair{*id, sent});
  }
  // Stored: a SYSTEM message in the user's own conversation and inbox,
  // delivered (PUSH) and pulled like any message.
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
  (void)stage_inbox(uid, m, false, 0);  // the user is loaded: it cannot fail
  commit_.after_commit([done = std::move(done), id = *id, online](bool ok) {
    if (ok) return done(std::pair{id, online});
    done(make_error(StatusCode::kInternal, "the push could not be stored"));
  });
  commit_.schedule();
}

void Shard::queue_report(const std::string& uid, std::uint8_t device_type, const v1::ReportReq& report,
                         std::function<void(const Result<Ok>&)> done) {
  // The event's id is also its outbox key: stable across retries, unique
  // across restarts (a msg_id), and increasing per user (a user's events
  // all come from this shard).
  commit_.make_room();
  auto id = clock_->next();
  if (!id) return done(id.error());
  store::Outbox::push(commit_.batch(), report_event(*id, wall_ms(), uid, device_type, report));
  ++commit_.staged().outbox;
  commit_.after_commit([done = std::move(done)](bool ok) {
    if (ok) {
      metrics::get().reports_queued.inc();
      return done(Ok{});
    }
    done(make_error(StatusCode::kInternal, "the report could not be queued"));
  });
  commit_.schedule();
}

void Shard::fire_offline(std::vector<OfflinePushes::Entry>& due) {
  commit_.make_room();
  bool wrote = false;
  for (const auto& e : due) {
    auto it = users_.find(e.uid);
    if (it != users_.end() && it->second.max_acked >= e.inbox_seq) continue;
    auto id = clock_->next();
    if (!id) {
      spdlog::error("shard {}: offline_push for {} dropped: {}", index_, e.uid, id.error().message);
      continue;
    }
    store::Outbox::push(commit_.batch(), offline_push_event(*id, wall_ms(), e.uid, e.msg));
    ++commit_.staged().outbox;
    metrics::get().offline_pushes_queued.inc();
    wrote = true;
  }
  if (wrote) commit_.schedule();
}

}  // namespace im::core
