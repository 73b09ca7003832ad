#include "core/shard.h"

#include <algorithm>
#include <chrono>

#include <spdlog/spdlog.h>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "common/clock.h"
#include "common/metrics.h"
#include "core/names.h"
#include "net/frames.h"
#include "store/keys.h"

namespace im::core {
namespace {

using store::Cf;

constexpr std::uint32_t kPullDefault = 100;
constexpr std::uint32_t kPullMax = 1000;
constexpr std::uint32_t kHistoryDefault = 50;
constexpr std::uint32_t kHistoryMax = 500;
constexpr std::size_t kFrameSlack = 64;    // room for the non-message fields of an answer
constexpr std::size_t kPreviewBytes = 64;  // offline_push preview
// A batch is written early once it holds this many rows (at a message
// boundary): past a few hundred messages a batch gains no throughput
// (BENCHMARKS.md) and only delays the first answers.
constexpr std::size_t kMaxBatchRows = Shard::kMaxBatchRows;
constexpr auto kCursorFlushInterval = std::chrono::seconds(1);
constexpr auto kRetryDelay = std::chrono::milliseconds(200);
constexpr std::uint64_t kMsgIdEpochMs = 1704067200000ull;  // 2024-01-01T00:00:00Z
constexpr std::uint64_t kMsgIdReserveMs = 60000;
constexpr std::string_view kFanoutSender = "S";
constexpr std::string_view kFanoutRecipient = "R";

void append_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void append_varint_field(std::string& out, int field, std::uint64_t v) {
  if (v == 0) return;
  append_varint(out, static_cast<std::uint64_t>(field) << 3);
  append_varint(out, v);
}

std::size_t varint_size(std::uint64_t v) {
  std::size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

// Bytes a row takes inside a repeated message field.
std::size_t field_size(std::size_t row) {
  return 1 + varint_size(row) + row;
}

// A response frame whose body is already serialized.
net::SharedFrame raw_response(const FrameHeader& request, std::string body) {
  FrameHeader h;
  h.flags = kFlagResponse;
  h.cmd = request.cmd;
  h.seq = request.seq;
  return std::make_shared<const std::string>(encode_frame(h, body));
}

std::string meta_msg_id_key(unsigned shard) {
  return "msg_id_reserved:" + std::to_string(shard);
}

}  // namespace

void append_bytes_field(std::string& out, int field, std::string_view bytes) {
  append_varint(out, (static_cast<std::uint64_t>(field) << 3) | 2);
  append_varint(out, bytes.size());
  out.append(bytes);
}

std::size_t shard_of(std::string_view key, std::size_t shard_count) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return static_cast<std::size_t>(h % shard_count);
}

Shard& CoreEnv::shard_for(std::string_view key) {
  return *shards[shard_of(key, shards.size())];
}

std::uint32_t CoreEnv::next_push_seq() {
  for (;;) {
    std::uint32_t seq = push_seq.fetch_add(1, std::memory_order_relaxed) + 1;
    if (seq != 0) return seq;
  }
}

Shard& conversation_owner(CoreEnv& env, int conv_type, std::string_view from, std::string_view to) {
  if (conv_type == v1::C2C) return env.shard_for(from < to ? from : to);
  if (conv_type == v1::GROUP) return env.shard_for(store::group_conv(to));
  return env.shard_for(to);
}

Shard::Shard(unsigned index, CoreEnv& env) : index_(index), env_(env), batch_(env.store) {
  // Every msg_id an earlier run handed out lies below its durable
  // reservation: start from there.
  auto reserved = env_.store.get(Cf::kMeta, meta_msg_id_key(index_));
  if (reserved && reserved->has_value()) msg_id_reserved_ms_ = store::read_u64(**reserved);
  msg_id_last_ms_ = msg_id_reserved_ms_;
  reserve_msg_ids(std::max<std::uint64_t>(msg_id_last_ms_, static_cast<std::uint64_t>(wall_ms()) - kMsgIdEpochMs));
}

void Shard::reserve_msg_ids(std::uint64_t from_ms) {
  // Written at once, not with the next batch: the messages using these ids
  // may be written by another shard, and must never outlive the reservation.
  msg_id_reserved_ms_ = from_ms + kMsgIdReserveMs;
  store::Batch b(env_.store);
  std::string v;
  store::append_u64(v, msg_id_reserved_ms_);
  b.put(Cf::kMeta, meta_msg_id_key(index_), v);
  if (auto written = env_.store.write(b); !written)
    spdlog::error("shard {}: cannot reserve msg_ids: {}", index_, written.error().message);
}

Shard::~Shard() {
  stop();
}

void Shard::start() {
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(context_);
    context_.run();
  });
}

void Shard::stop() {
  if (!thread_.joinable()) return;
  asio::post(context_, [this] {
    flush_cursors();
    if (!batch_.empty()) commit();
    offline_timer_.cancel();
    cursor_timer_.cancel();
    if (commits_ > 0)
      spdlog::info("shard {}: {} batches written, {} rows, {:.1f} rows a batch on average, {} at most", index_,
                   commits_, committed_ops_, static_cast<double>(committed_ops_) / commits_, largest_batch_);
    context_.stop();
  });
  thread_.join();
}

// ---------------------------------------------------------------- state

Shard::UserState& Shard::user(const std::string& uid) {
  UserState& u = users_[uid];
  if (!u.loaded) {
    u.loaded = true;
    if (auto last = env_.store.last_key(Cf::kInbox, store::user_prefix(uid))) {
      u.inbox_next = u.inbox_committed = store::seq_of(*last);
    }
  }
  return u;
}

Shard::ConvState& Shard::conversation(const std::string& conv) {
  auto [it, added] = convs_.try_emplace(conv);
  if (added) {
    if (auto last = env_.store.last_key(Cf::kHistory, store::conv_prefix(conv)))
      it->second.next = it->second.committed = store::seq_of(*last);
  }
  return it->second;
}

Shard::DeviceCursor& Shard::cursor(UserState& u, const std::string& uid, std::uint8_t device_type,
                                   const std::string& device_id) {
  for (DeviceCursor& c : u.cursors)
    if (c.device_type == device_type && c.device_id == device_id) return c;
  DeviceCursor c{device_type, device_id, 0, false};
  auto stored = env_.store.get(Cf::kCursors, store::cursor_key(uid, device_type, device_id));
  if (stored && stored->has_value()) c.acked = store::read_u64(**stored);
  u.cursors.push_back(std::move(c));
  return u.cursors.back();
}

std::uint64_t Shard::next_msg_id() {
  // 41 bits of milliseconds since 2024, 8 bits of shard, 14 bits of counter:
  // unique and time-ordered. Ids are handed out only below a durable
  // reservation (meta), and a new run starts above the last one, so neither
  // a restart nor a clock going back can repeat an id.
  std::uint64_t ms = static_cast<std::uint64_t>(wall_ms()) - kMsgIdEpochMs;
  if (ms <= msg_id_last_ms_) {
    ms = msg_id_last_ms_;
    if (++msg_id_counter_ >= (1u << 14)) {
      ++ms;
      msg_id_counter_ = 0;
    }
  } else {
    msg_id_counter_ = 0;
  }
  msg_id_last_ms_ = ms;
  if (ms + kMsgIdReserveMs / 2 > msg_id_reserved_ms_) reserve_msg_ids(ms);
  return (ms << 22) | (static_cast<std::uint64_t>(index_ & 0xFF) << 14) | msg_id_counter_;
}

// ---------------------------------------------------------------- sessions

std::optional<SessionRef> Shard::add_session(const std::string& uid, SessionRef session, LoginState& state) {
  UserState& u = user(uid);
  std::optional<SessionRef> replaced;
  for (auto it = u.sessions.begin(); it != u.sessions.end(); ++it) {
    if (it->device_type == session.device_type) {
      replaced = std::move(*it);
      u.sessions.erase(it);
      break;
    }
  }
  state.inbox_max_seq = u.inbox_committed;
  state.acked_seq = cursor(u, uid, session.device_type, session.device_id).acked;
  u.sessions.push_back(std::move(session));
  return replaced;
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

PresenceInfo Shard::presence(const std::string& uid) {
  PresenceInfo info;
  auto it = users_.find(uid);
  if (it == users_.end()) return info;
  info.online = !it->second.sessions.empty();
  info.last_seen_ms = it->second.last_seen_ms;
  for (const SessionRef& s : it->second.sessions) info.devices.push_back(s.device_type);
  std::sort(info.devices.begin(), info.devices.end());
  info.devices.erase(std::unique(info.devices.begin(), info.devices.end()), info.devices.end());
  return info;
}

std::vector<SessionRef> Shard::sessions(const std::string& uid) {
  auto it = users_.find(uid);
  return it == users_.end() ? std::vector<SessionRef>{} : it->second.sessions;
}

// ---------------------------------------------------------------- send

void Shard::send(std::shared_ptr<SendJob> job) {
  const v1::Message& m = job->msg;
  std::string key = store::dedupe_key(m.from(), m.client_msg_id());
  if (auto it = inflight_.find(key); it != inflight_.end()) {
    it->second.push_back(std::move(job));  // a retry of a SEND under way: answered with it
    return;
  }
  auto stored = env_.store.get(Cf::kDedupe, key);
  if (!stored) {
    finish_send(job, StatusCode::kInternal, {});
    return;
  }
  if (stored->has_value()) {
    auto rec = store::DedupeRecord::decode(**stored);
    const std::int64_t window_ms = std::int64_t{env_.config.storage.dedupe_window_s} * 1000;
    if (rec && rec->time_ms >= wall_ms() - window_ms) {
      v1::SendResp resp;
      resp.set_msg_id(rec->msg_id);
      resp.set_conv_seq(rec->conv_seq);
      resp.set_inbox_seq(rec->inbox_seq);
      resp.set_server_time_ms(rec->time_ms);
      resp.set_duplicate(true);
      inflight_.try_emplace(key);
      finish_send(job, StatusCode::kOk, resp);
      return;
    }
  }
  inflight_.try_emplace(key);
  job->msg.set_msg_id(next_msg_id());
  job->msg.set_server_time_ms(wall_ms());
  Shard& owner = conversation_owner(env_, job->msg.conv_type(), job->msg.from(), job->msg.to());
  if (&owner == this) {
    stage_conversation(std::move(job));
  } else {
    asio::post(owner.context(), [&owner, job = std::move(job)]() mutable { owner.stage_conversation(std::move(job)); });
  }
}

void Shard::stage_conversation(std::shared_ptr<SendJob> job) {
  if (batch_.count() >= kMaxBatchRows) commit();
  if (job->msg.conv_type() == v1::GROUP) {
    GroupState& g = group(job->msg.to());
    StatusCode refused = StatusCode::kOk;
    if (!g.exists || g.dismissed) {
      refused = StatusCode::kNotFound;
    } else if (!g.members.count(job->msg.from())) {
      refused = StatusCode::kForbidden;
    }
    if (refused != StatusCode::kOk) {
      Shard& sender = env_.shard_for(job->msg.from());
      asio::post(sender.context(), [&sender, job, refused] { sender.finish_send(job, refused, {}); });
      return;
    }
    std::vector<std::string> recipients;
    recipients.reserve(g.members.size());
    for (const auto& [uid, is_owner] : g.members) recipients.push_back(uid);
    stage_group_message(job->msg, std::move(recipients), job);
    schedule_commit();
    return;
  }
  v1::Message& m = job->msg;
  ConvState& c = conversation(job->conv);
  m.set_conv_seq(++c.next);
  touched_convs_.push_back(&c);
  batch_.put(Cf::kHistory, store::history_key(job->conv, m.conv_seq()), m.SerializeAsString());
  ++staged_history_rows_;

  std::vector<std::string> participants{m.from()};
  if (m.to() != m.from()) participants.push_back(m.to());
  bool sender_local = false;
  for (const std::string& uid : participants) {
    const bool is_sender = uid == m.from();
    Shard& owner = env_.shard_for(uid);
    if (&owner == this) {
      stage_inbox(uid, m, "", is_sender, is_sender ? job : nullptr, false);
      sender_local = sender_local || is_sender;
      continue;
    }
    // Another shard writes this copy: a durable record of it goes in this
    // batch, and that shard deletes it with the row (start-up replays it).
    std::string fk = store::fanout_key(job->conv, m.conv_seq(), uid);
    std::string record(is_sender ? kFanoutSender : kFanoutRecipient);
    m.AppendToString(&record);
    batch_.put(Cf::kFanout, fk, record);
    after_commit([&owner, uid, m, fk, is_sender, job](bool ok) {
      if (!ok) return;  // the sender is told below
      asio::post(owner.context(), [&owner, uid, m, fk, is_sender, job] {
        owner.append_pending(uid, m, fk, is_sender, is_sender ? job : nullptr);
      });
    });
  }
  if (!sender_local) {
    // The history row is what makes the message exist: if it failed, the
    // sender's shard must learn it (when it succeeded, its copy answers).
    after_commit([this, job](bool ok) {
      if (ok) return;
      Shard& sender = env_.shard_for(job->msg.from());
      asio::post(sender.context(), [&sender, job] { sender.finish_send(job, StatusCode::kInternal, {}); });
    });
  }
  schedule_commit();
}

void Shard::append_pending(std::string uid, v1::Message msg, std::string fanout_key, bool is_sender,
                           std::shared_ptr<SendJob> job) {
  if (batch_.count() >= kMaxBatchRows) commit();
  stage_inbox(uid, msg, fanout_key, is_sender, job, true);
  after_commit([this, uid, msg, fanout_key, is_sender, job](bool ok) {
    if (ok) return;
    // The message exists (its history row and fan-out record are durable):
    // retry this copy rather than fail a SEND that did happen.
    auto retry = std::make_shared<asio::steady_timer>(context_, kRetryDelay);
    retry->async_wait([this, retry, uid, msg, fanout_key, is_sender, job](const asio::error_code& ec) {
      if (!ec) append_pending(uid, msg, fanout_key, is_sender, job);
    });
  });
  schedule_commit();
}

void Shard::stage_inbox(const std::string& uid, const v1::Message& msg, const std::string& fanout_key, bool is_sender,
                        std::shared_ptr<SendJob> job, bool queued) {
  UserState& u = user(uid);
  v1::Message row = msg;
  row.set_inbox_seq(++u.inbox_next);
  touched_users_.push_back(&u);
  std::string bytes = row.SerializeAsString();
  batch_.put(Cf::kInbox, store::inbox_key(uid, row.inbox_seq()), bytes);
  ++staged_inbox_rows_;
  if (!fanout_key.empty()) batch_.del(Cf::kFanout, fanout_key);
  if (is_sender && !msg.client_msg_id().empty()) {
    store::DedupeRecord rec{msg.msg_id(), msg.conv_seq(), row.inbox_seq(), msg.server_time_ms()};
    batch_.put(Cf::kDedupe, store::dedupe_key(msg.from(), msg.client_msg_id()), rec.encode());
  }
  pushes_.push_back({&u, std::move(bytes), is_sender && job ? job->session_id : 0});
  if (!is_sender && msg.content_type() < 10000 && env_.webhook_enabled()) {
    OfflineTimer t{std::chrono::steady_clock::now() + std::chrono::milliseconds(env_.config.push.offline_delay_ms), uid,
                   row.inbox_seq(), msg};
    if (t.msg.body().size() > kPreviewBytes) t.msg.mutable_body()->resize(kPreviewBytes);
    new_offline_.push_back(std::move(t));
  }
  if (!is_sender || !job) return;
  after_commit([this, row, job, queued](bool ok) {
    if (ok) {
      v1::SendResp resp;
      resp.set_msg_id(row.msg_id());
      resp.set_conv_seq(row.conv_seq());
      resp.set_server_time_ms(row.server_time_ms());
      resp.set_inbox_seq(row.inbox_seq());
      finish_send(job, StatusCode::kOk, resp);
    } else if (!queued) {
      finish_send(job, StatusCode::kInternal, {});
    }  // queued: the caller retries, and the answer comes with the retry
  });
}

void Shard::finish_send(const std::shared_ptr<SendJob>& job, StatusCode status, const v1::SendResp& resp) {
  auto answer = [](const std::shared_ptr<SendJob>& j, StatusCode st, const v1::SendResp& r) {
    if (j->started != std::chrono::steady_clock::time_point{})
      metrics::get().send_latency.observe(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - j->started).count());
    if (j->on_done) {
      j->on_done(st, r);
      return;
    }
    auto conn = j->conn.lock();
    if (!conn) return;
    if (st == StatusCode::kOk) {
      net::send_from_any_thread(conn, net::make_response(j->request, StatusCode::kOk, &r));
    } else {
      const char* why = st == StatusCode::kNotFound    ? "no such group"
                        : st == StatusCode::kForbidden ? "not a member of the group"
                                                       : "the message could not be stored";
      net::send_from_any_thread(conn, net::make_error_response(j->request, st, why));
    }
  };
  answer(job, status, resp);
  auto it = inflight_.find(store::dedupe_key(job->msg.from(), job->msg.client_msg_id()));
  if (it == inflight_.end()) return;
  auto waiting = std::move(it->second);
  inflight_.erase(it);
  v1::SendResp dup = resp;
  dup.set_duplicate(true);
  for (auto& w : waiting) answer(w, status, status == StatusCode::kOk ? dup : resp);
}

// ---------------------------------------------------------------- group commit

void Shard::after_commit(AfterCommit fn) {
  after_commit_.push_back(std::move(fn));
}

void Shard::schedule_commit() {
  if (commit_posted_) return;
  commit_posted_ = true;
  // Runs after every handler queued so far: what arrived while the previous
  // batch was being written all goes into this one.
  asio::post(context_, [this] { commit(); });
}

void Shard::commit() {
  // Also called early by a full batch; the commit already posted then finds
  // an empty one.
  commit_posted_ = false;
  auto callbacks = std::move(after_commit_);
  auto users = std::move(touched_users_);
  auto convs = std::move(touched_convs_);
  auto pushes = std::move(pushes_);
  auto offline = std::move(new_offline_);
  after_commit_.clear();
  touched_users_.clear();
  touched_convs_.clear();
  pushes_.clear();
  new_offline_.clear();
  const std::size_t ops = batch_.count();
  const auto write_start = std::chrono::steady_clock::now();
  auto written = env_.store.write(batch_);
  auto& m = metrics::get();
  if (ops > 0) {
    m.store_write_latency.observe(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - write_start).count());
    m.batch_rows.observe(static_cast<double>(ops));
  }
  if (written.ok()) {
    m.messages_stored.inc(staged_history_rows_);
    m.inbox_rows.inc(staged_inbox_rows_);
    m.outbox_depth.add(static_cast<std::int64_t>(staged_outbox_events_));
  } else {
    m.store_write_errors.inc();
  }
  staged_history_rows_ = staged_inbox_rows_ = staged_outbox_events_ = 0;
  batch_.clear();
  ++commits_;
  committed_ops_ += ops;
  largest_batch_ = std::max<std::uint64_t>(largest_batch_, ops);
  const bool ok = written.ok();
  if (ok) {
    for (UserState* u : users) u->inbox_committed = u->inbox_next;
    for (ConvState* c : convs) c->committed = c->next;
    deliver_pushes(pushes);
    for (auto& t : offline) offline_.push_back(std::move(t));
    if (!offline_.empty()) arm_offline_timer();
  } else {
    spdlog::error("shard {}: write failed: {}", index_, written.error().message);
    for (UserState* u : users) u->inbox_next = u->inbox_committed;
    for (ConvState* c : convs) c->next = c->committed;
  }
  for (auto& fn : callbacks) fn(ok);
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
  for (UserState* u : order) {
    if (u->sessions.empty()) continue;
    const auto& rows = rows_of[u];
    const bool any_excluded =
        std::any_of(rows.begin(), rows.end(), [](const Push* p) { return p->exclude_session != 0; });
    const auto shared = any_excluded ? std::vector<net::SharedFrame>{} : push_frames(rows);
    for (const SessionRef& s : u->sessions) {
      auto conn = s.conn.lock();
      if (!conn) continue;
      if (!any_excluded) {
        for (const auto& f : shared) net::send_from_any_thread(conn, f);
        metrics::get().pushes.inc(shared.size());
        continue;
      }
      std::vector<const Push*> mine;
      for (const Push* p : rows)
        if (p->exclude_session != s.session_id) mine.push_back(p);
      for (const auto& f : push_frames(mine)) net::send_from_any_thread(conn, f);
    }
  }
}

std::vector<net::SharedFrame> Shard::push_frames(const std::vector<const Push*>& rows) {
  const std::size_t budget = env_.config.server.max_frame_bytes - kFrameSlack;
  std::vector<net::SharedFrame> frames;
  std::string body;
  auto flush = [&] {
    if (body.empty()) return;
    FrameHeader h;
    h.cmd = Cmd::kPush;
    h.seq = env_.next_push_seq();
    frames.push_back(std::make_shared<const std::string>(encode_frame(h, body)));
    body.clear();
  };
  for (const Push* p : rows) {
    if (!body.empty() && body.size() + field_size(p->row.size()) > budget) flush();
    append_bytes_field(body, 1, p->row);
  }
  flush();
  return frames;
}

// ---------------------------------------------------------------- business integration

void Shard::server_push(const std::string& uid, const std::string& topic, const std::string& payload, bool persist,
                        std::function<void(std::uint64_t, std::uint32_t)> done) {
  UserState& u = user(uid);
  const auto online = static_cast<std::uint32_t>(u.sessions.size());
  if (!persist) {
    v1::ServerPush push;
    push.set_push_id(next_msg_id());
    push.set_topic(topic);
    push.set_payload(payload);
    push.set_server_time_ms(wall_ms());
    FrameHeader h;
    h.cmd = Cmd::kServerPush;
    h.seq = env_.next_push_seq();
    auto frame = net::make_frame(h, &push);
    std::uint32_t sent = 0;
    for (const SessionRef& sref : u.sessions) {
      if (auto conn = sref.conn.lock()) {
        net::send_from_any_thread(conn, frame);
        ++sent;
      }
    }
    done(push.push_id(), sent);
    return;
  }
  // Stored: a SYSTEM message in the user's own conversation and inbox,
  // delivered (PUSH) and pulled like any message.
  if (batch_.count() >= kMaxBatchRows) commit();
  v1::Message m;
  m.set_msg_id(next_msg_id());
  m.set_conv_type(v1::SYSTEM);
  m.set_to(uid);
  m.set_content_type(10002);
  m.set_topic(topic);
  m.set_body(payload);
  m.set_server_time_ms(wall_ms());
  const std::string conv = store::system_conv(uid);
  ConvState& c = conversation(conv);
  m.set_conv_seq(++c.next);
  touched_convs_.push_back(&c);
  batch_.put(Cf::kHistory, store::history_key(conv, m.conv_seq()), m.SerializeAsString());
  ++staged_history_rows_;
  stage_inbox(uid, m, "", false, nullptr, false);
  after_commit([done = std::move(done), id = m.msg_id(), online](bool ok) { done(ok ? id : 0, ok ? online : 0); });
  schedule_commit();
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

void Shard::queue_event(std::string json_without_id, std::function<void(bool)> done) {
  // The event JSON is completed here with its id, which is also its outbox
  // key: stable across retries, unique across restarts (a msg_id), and
  // increasing per user (a user's events all come from this shard).
  const std::uint64_t id = next_msg_id();
  auto event = nlohmann::json::parse(json_without_id, nullptr, false);
  event["id"] = std::to_string(id);
  batch_.put(Cf::kOutbox, store::outbox_key(id), event.dump());
  ++staged_outbox_events_;
  after_commit(std::move(done));
  schedule_commit();
}

// ---------------------------------------------------------------- ack, pull, history

StatusCode Shard::ack(const std::string& uid, std::uint8_t device_type, const std::string& device_id,
                      std::uint64_t seq) {
  UserState& u = user(uid);
  if (seq > u.inbox_committed) return StatusCode::kBadRequest;
  DeviceCursor& c = cursor(u, uid, device_type, device_id);
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
  return StatusCode::kOk;
}

void Shard::pull(const std::string& uid, std::uint8_t device_type, const std::string& device_id, const v1::PullReq& req,
                 Requester who) {
  UserState& u = user(uid);
  const std::uint64_t committed = u.inbox_committed;
  (void)ack(uid, device_type, device_id, std::min(req.after_seq(), committed));
  std::uint32_t limit = req.limit() == 0 ? kPullDefault : std::min(req.limit(), kPullMax);
  const std::size_t budget = env_.config.server.max_frame_bytes - kFrameSlack;
  std::string body;
  std::uint32_t count = 0;
  std::uint64_t last = req.after_seq();
  if (req.after_seq() < committed) {
    // Readers never look past the committed seq: no gap is ever visible.
    env_.store.scan(Cf::kInbox, store::inbox_key(uid, req.after_seq() + 1), store::inbox_key(uid, committed + 1),
                    [&](std::string_view key, std::string_view row) {
                      if (count == limit || body.size() + field_size(row.size()) > budget) return false;
                      append_bytes_field(body, 1, row);
                      ++count;
                      last = store::seq_of(key);
                      return true;
                    });
  }
  const bool has_more = last < committed;
  std::uint64_t oldest = 0;
  if (auto first = env_.store.first_key(Cf::kInbox, store::user_prefix(uid))) oldest = store::seq_of(*first);
  append_varint_field(body, 2, has_more ? 1 : 0);
  append_varint_field(body, 3, committed);
  append_varint_field(body, 4, oldest);
  net::send_from_any_thread(who.conn, raw_response(who.request, std::move(body)));
}

void Shard::history(const std::string& conv, const v1::HistoryReq& req, Requester who) {
  ConvState& c = conversation(conv);
  const std::uint64_t top = req.before_seq() == 0 ? c.committed + 1 : std::min(req.before_seq(), c.committed + 1);
  const std::uint32_t limit = req.limit() == 0 ? kHistoryDefault : std::min(req.limit(), kHistoryMax);
  const std::size_t budget = env_.config.server.max_frame_bytes - kFrameSlack;
  std::vector<std::string> rows;  // newest first
  std::size_t size = 0;
  bool has_more = false;
  env_.store.scan(
      Cf::kHistory, store::conv_prefix(conv), store::history_key(conv, top),
      [&](std::string_view, std::string_view row) {
        if (rows.size() == limit || size + field_size(row.size()) > budget) {
          has_more = true;
          return false;
        }
        size += field_size(row.size());
        rows.emplace_back(row);
        return true;
      },
      true);
  std::string body;
  for (auto it = rows.rbegin(); it != rows.rend(); ++it) append_bytes_field(body, 1, *it);
  append_varint_field(body, 2, has_more ? 1 : 0);
  net::send_from_any_thread(who.conn, raw_response(who.request, std::move(body)));
}

// ---------------------------------------------------------------- cursors and offline pushes

void Shard::flush_cursors() {
  // Only the users with something to write: a disconnect calls this, and a
  // walk over every cached user would make a mass disconnect quadratic.
  if (dirty_cursors_.empty()) return;
  for (auto [uid, u] : dirty_cursors_) {
    u->cursors_dirty = false;
    for (DeviceCursor& c : u->cursors) {
      if (!c.dirty) continue;
      std::string v;
      store::append_u64(v, c.acked);
      batch_.put(Cf::kCursors, store::cursor_key(*uid, c.device_type, c.device_id), v);
      c.dirty = false;
    }
  }
  dirty_cursors_.clear();
  schedule_commit();
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

void Shard::arm_offline_timer() {
  if (offline_armed_ || offline_.empty()) return;
  offline_armed_ = true;
  offline_timer_.expires_at(offline_.front().due);
  offline_timer_.async_wait([this](const asio::error_code& ec) {
    offline_armed_ = false;
    if (!ec) fire_offline_timers();
  });
}

void Shard::fire_offline_timers() {
  // The delay is the same for every message, so the queue is in due order.
  const auto now = std::chrono::steady_clock::now();
  bool wrote = false;
  while (!offline_.empty() && offline_.front().due <= now) {
    OfflineTimer t = std::move(offline_.front());
    offline_.pop_front();
    auto it = users_.find(t.uid);
    if (it != users_.end() && it->second.max_acked >= t.inbox_seq) continue;
    const std::uint64_t id = next_msg_id();
    nlohmann::json event = {
        {"id", std::to_string(id)},
        {"event", "offline_push"},
        {"time_ms", wall_ms()},
        {"uid", t.uid},
        {"msg_id", std::to_string(t.msg.msg_id())},
        {"conv_type", t.msg.conv_type() == v1::GROUP    ? "group"
                      : t.msg.conv_type() == v1::SYSTEM ? "system"
                                                        : "c2c"},
        {"from", t.msg.from()},
        {"to", t.msg.to()},
        {"content_type", t.msg.content_type()},
        {"preview_b64", base64_encode(t.msg.body())},
    };
    batch_.put(Cf::kOutbox, store::outbox_key(id), event.dump());
    metrics::get().offline_pushes_queued.inc();
    ++staged_outbox_events_;
    wrote = true;
  }
  if (wrote) schedule_commit();
  arm_offline_timer();
}

}  // namespace im::core
