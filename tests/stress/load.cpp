#include "load.h"

#include <httplib.h>

#include <fmt/format.h>
#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/base64.h"

namespace im::stress {
namespace {

constexpr auto kAnswerTimeout = std::chrono::seconds(10);

std::string serialized(const google::protobuf::MessageLite& m) {
  return m.SerializeAsString();
}

v1::DeviceType other_device(v1::DeviceType d, std::uint64_t r) {
  // IOS .. DESKTOP are 1 .. 4: one of the three others.
  return static_cast<v1::DeviceType>((static_cast<int>(d) - 1 + 1 + static_cast<int>(r % 3)) % 4 + 1);
}

}  // namespace

std::vector<std::string> Population::all() const {
  std::vector<std::string> out = actors;
  out.insert(out.end(), passive.begin(), passive.end());
  out.insert(out.end(), churn.begin(), churn.end());
  out.insert(out.end(), quiet.begin(), quiet.end());
  return out;
}

Population make_population(const std::string& prefix, int actors, int passive, int churn) {
  Population people;
  for (int i = 0; i < actors; ++i) people.actors.push_back(fmt::format("{}a{}", prefix, i));
  for (int i = 0; i < passive; ++i) people.passive.push_back(fmt::format("{}p{}", prefix, i));
  for (int i = 0; i < churn; ++i) people.churn.push_back(fmt::format("{}c{}", prefix, i));
  return people;
}

GroupRecord setup_group(const std::string& owner, const std::string& gid, const std::string& name,
                        std::initializer_list<const std::vector<std::string>*> lists, v1::GroupCreateReq& req) {
  GroupRecord g;
  g.owner = owner;
  g.gid = gid;
  g.names = {name};
  g.announcements = {""};
  req.set_gid(g.gid);
  req.set_name(name);
  for (const auto* list : lists)
    for (const auto& u : *list) {
      req.add_members(u);
      g.created_with.insert(u);
    }
  g.stable = g.created_with;
  g.life = GroupRecord::Life::kLive;
  return g;
}

v1::SendReq send_req(const SendRecord& r) {
  v1::SendReq req;
  req.set_client_msg_id(r.cmid);
  req.set_conv_type(r.type);
  req.set_to(r.to);
  req.set_content_type(r.content_type);
  req.set_body(r.body);
  return req;
}

std::string random_bytes(std::mt19937_64& rng, std::size_t max) {
  std::string s(1 + rng() % std::max<std::size_t>(max, 1), '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// ---------------------------------------------------------------- Actor

Actor::Actor(const LoadContext& ctx, std::string uid, std::uint64_t seed)
    : ctx_(ctx), ledger_(*ctx.ledger), uid_(std::move(uid)), rng_(seed) {
  device_ = static_cast<v1::DeviceType>(1 + rng_() % 4);
}

std::string Actor::next_id(const char* kind) {
  return fmt::format("{}.{}.{}.{}", uid_, kind, ctx_.cycle, ++counter_);
}

std::string Actor::random_body(std::size_t max) {
  return random_bytes(rng_, max);
}

bool Actor::reconnect() {
  for (int attempt = 0; !ctx_.stop->load(); ++attempt) {
    if (conn_.connect(ctx_.port, std::chrono::seconds(2))) {
      std::string why;
      auto resp = login(conn_, uid_, ctx_.token(uid_), device_, "main", why);
      if (resp) {
        session_ = ledger_.new_session();
        order_ = 0;
        login_max_ = resp->inbox_max_seq();
        session_seqs_.clear();
        unanswered_ = false;
        const std::uint64_t seen = ledger_.max_seen_inbox(uid_);
        if (resp->inbox_max_seq() < seen)
          ledger_.violation(fmt::format("LOGIN of {}: inbox_max_seq {} below seq {} seen before (cycle {})", uid_,
                                        resp->inbox_max_seq(), seen, ctx_.cycle));
        if (resp->acked_seq() > resp->inbox_max_seq())
          ledger_.violation(fmt::format("LOGIN of {}: acked_seq {} above inbox_max_seq {} (cycle {})", uid_,
                                        resp->acked_seq(), resp->inbox_max_seq(), ctx_.cycle));
        return true;
      }
      if (conn_.open()) ledger_.count("actor LOGIN failed: " + why);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20 * (attempt + 1), 200)));
  }
  return false;
}

void Actor::run() {
  if (!reconnect()) return;
  while (!ctx_.stop->load()) {
    if (!conn_.open() && !reconnect()) break;
    const std::uint64_t r = rng_() % 100;
    if (r < 30) {
      c2c_burst();
    } else if (r < 50) {
      group_burst();
    } else if (r < 60) {
      group_change();
    } else if (r < 70) {
      pull(conn_, "PULL");
    } else if (r < 76) {
      history();
    } else if (r < 88) {
      report();
    } else if (r < 94) {
      relogin();
    } else {
      second_device();
    }
    drain_pushes();
    if (ctx_.pause.count() > 0) conn_.pump(ctx_.pause);
  }
  conn_.close(true);
}

bool Actor::send_batch(std::vector<SendRecord> records) {
  std::vector<std::pair<Cmd, std::string>> requests;
  for (auto& r : records) {
    r.session = session_;
    r.order = ++order_;
    r.cycle = ctx_.cycle;
    requests.emplace_back(Cmd::kSend, serialized(send_req(r)));
    ledger_.add_send(r);
  }
  auto answers = conn_.calls(requests, kAnswerTimeout);
  for (const auto& a : answers) unanswered_ = unanswered_ || !a;
  bool any_ok = false;
  for (std::size_t i = 0; i < records.size(); ++i) {
    ledger_.answer_send({records[i].from, records[i].cmid}, answers[i]);
    if (answers[i] && answers[i]->ok()) {
      any_ok = true;
      v1::SendResp resp;
      if (answers[i]->parse(resp)) session_seqs_.insert(resp.inbox_seq());
    } else {
      ledger_.count("SEND " + describe(answers[i]));
    }
    if (answers[i] && !answers[i]->ok() && conn_.open() &&
        (answers[i]->status() == StatusCode::kForbidden || answers[i]->status() == StatusCode::kNotFound ||
         answers[i]->status() == StatusCode::kBadRequest))
      ledger_.violation(fmt::format("SEND {} of {} to {}: {} (cycle {})", records[i].cmid, uid_, records[i].to,
                                    describe(answers[i]), ctx_.cycle));
  }
  ledger_.count("SEND", records.size());
  return any_ok;
}

void Actor::c2c_burst() {
  std::vector<std::string> peers = ctx_.people.actors;
  peers.insert(peers.end(), ctx_.people.passive.begin(), ctx_.people.passive.end());
  std::vector<SendRecord> batch;
  const int n = 1 + static_cast<int>(rng_() % 8);
  for (int i = 0; i < n; ++i) {
    SendRecord r;
    r.from = uid_;
    r.cmid = next_id("m");
    r.type = v1::C2C;
    r.to = rng_() % 20 == 0 ? uid_ : pick(peers);
    r.content_type = static_cast<std::uint32_t>(rng_() % 10000);
    r.body = random_body(300);
    batch.push_back(std::move(r));
  }
  send_batch(std::move(batch));
}

std::vector<GroupRecord> Actor::my_groups(bool owned) {
  std::vector<GroupRecord> out;
  for (auto& g : ledger_.groups()) {
    if (g.life != GroupRecord::Life::kLive || g.throwaway) continue;
    if (owned ? g.owner == uid_ : g.stable.count(uid_) > 0) out.push_back(std::move(g));
  }
  return out;
}

bool Actor::send_to_group(const std::string& gid, int n) {
  std::vector<SendRecord> batch;
  for (int i = 0; i < n; ++i) {
    SendRecord r;
    r.from = uid_;
    r.cmid = next_id("g");
    r.type = v1::GROUP;
    r.to = gid;
    r.content_type = static_cast<std::uint32_t>(rng_() % 10000);
    r.body = random_body(300);
    batch.push_back(std::move(r));
  }
  return send_batch(std::move(batch));
}

void Actor::group_burst() {
  auto groups = my_groups(false);
  if (groups.empty()) return c2c_burst();
  send_to_group(pick(groups).gid, 1 + static_cast<int>(rng_() % 6));
}

void Actor::group_change() {
  const std::uint64_t r = rng_() % 100;
  if (r < 15) {
    create_group(false);
  } else if (r < 30) {
    throwaway_run();
  } else if (r < 60) {
    add_churn();
  } else {
    owner_change();
  }
}

std::optional<GroupRecord> Actor::create_group(bool throwaway) {
  GroupRecord g;
  g.gid = next_id(throwaway ? "d" : "n");
  g.owner = uid_;
  g.throwaway = throwaway;
  std::vector<std::string> pool = ctx_.people.actors;
  pool.insert(pool.end(), ctx_.people.passive.begin(), ctx_.people.passive.end());
  std::shuffle(pool.begin(), pool.end(), rng_);
  pool.resize(1 + rng_() % std::min<std::size_t>(pool.size(), 5));
  v1::GroupCreateReq req;
  req.set_gid(g.gid);
  const std::string name = "group " + g.gid;
  req.set_name(name);
  g.names = {name};
  g.announcements = {""};
  g.created_with = {uid_};
  for (const auto& u : pool) {
    req.add_members(u);
    g.created_with.insert(u);
  }
  g.stable = g.created_with;
  if (!throwaway && rng_() % 3 == 0) {
    const std::string& c = pick(ctx_.people.churn);
    req.add_members(c);
    g.created_with.insert(c);
  }
  g.life = GroupRecord::Life::kMaybeCreated;
  ledger_.put_group(g);
  auto answer = call(Cmd::kGroupCreate, req);
  ledger_.count("GROUP_CREATE " + describe(answer));
  if (!answer) return std::nullopt;
  if (!answer->ok()) {
    if (definite_failure(answer->status())) {
      g.life = GroupRecord::Life::kAbsent;
      ledger_.put_group(g);
    }
    if (answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("GROUP_CREATE {} by {}: {} (cycle {})", g.gid, uid_, describe(answer), ctx_.cycle));
    return std::nullopt;
  }
  v1::GroupResp resp;
  if (!answer->parse(resp)) {
    ledger_.violation("GROUP_CREATE " + g.gid + ": the GroupResp does not parse");
    return std::nullopt;
  }
  std::set<std::string> listed(resp.members().begin(), resp.members().end());
  if (resp.group().owner() != uid_ || listed != g.created_with || resp.group().member_count() != g.created_with.size())
    ledger_.violation(fmt::format("GROUP_CREATE {}: answered owner {} and {} members ({} listed), asked {} members",
                                  g.gid, resp.group().owner(), resp.group().member_count(), listed.size(),
                                  g.created_with.size()));
  g.life = GroupRecord::Life::kLive;
  ledger_.put_group(g);
  return g;
}

void Actor::throwaway_run() {
  auto g = create_group(true);
  if (!g) return;
  send_to_group(g->gid, 1 + static_cast<int>(rng_() % 3));
  if (!conn_.open()) return;
  v1::GroupIdReq req;
  req.set_gid(g->gid);
  auto answer = call(Cmd::kGroupDismiss, req);
  ledger_.count("GROUP_DISMISS " + describe(answer));
  if (!answer) {
    g->life = GroupRecord::Life::kMaybeDismissed;
  } else if (answer->ok()) {
    g->life = GroupRecord::Life::kDismissed;
  } else if (answer->status() != StatusCode::kRateLimited) {
    ledger_.violation(fmt::format("GROUP_DISMISS {} by its owner {}: {}", g->gid, uid_, describe(answer)));
  }
  ledger_.put_group(*g);
}

void Actor::add_churn() {
  auto groups = my_groups(false);
  if (groups.empty()) return;
  v1::GroupMembersReq req;
  req.set_gid(pick(groups).gid);
  const int n = 1 + static_cast<int>(rng_() % 2);
  for (int i = 0; i < n; ++i) req.add_uids(pick(ctx_.people.churn));
  auto answer = call(Cmd::kGroupAddMembers, req);
  ledger_.count("GROUP_ADD_MEMBERS " + describe(answer));
  if (answer && !answer->ok() && answer->status() != StatusCode::kRateLimited)
    ledger_.violation(fmt::format("GROUP_ADD_MEMBERS {} by member {}: {}", req.gid(), uid_, describe(answer)));
}

void Actor::owner_change() {
  auto groups = my_groups(true);
  if (groups.empty()) return add_churn();
  GroupRecord g = pick(groups);
  if (rng_() % 2 == 0) {
    v1::GroupMembersReq req;
    req.set_gid(g.gid);
    req.add_uids(pick(ctx_.people.churn));
    auto answer = call(Cmd::kGroupRemoveMembers, req);
    ledger_.count("GROUP_REMOVE_MEMBERS " + describe(answer));
    if (answer && !answer->ok() && answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("GROUP_REMOVE_MEMBERS {} by its owner {}: {}", g.gid, uid_, describe(answer)));
    return;
  }
  v1::GroupUpdateReq req;
  req.set_gid(g.gid);
  const std::uint64_t what = rng_() % 3;  // 0 name, 1 announcement, 2 both
  const std::string name = fmt::format("name {}", next_id("u"));
  const std::string announcement = fmt::format("announcement {} {}", next_id("a"), std::string(rng_() % 200, 'a'));
  if (what != 1) req.set_name(name);
  if (what != 0) req.set_announcement(announcement);
  auto answer = call(Cmd::kGroupUpdate, req);
  ledger_.count("GROUP_UPDATE " + describe(answer));
  if (answer && !answer->ok()) {
    if (answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("GROUP_UPDATE {} by its owner {}: {}", g.gid, uid_, describe(answer)));
    if (definite_failure(answer->status())) return;
  }
  const bool known = answer && answer->ok();
  if (what != 1) {
    if (known) g.names.clear();
    g.names.insert(name);
  }
  if (what != 0) {
    if (known) g.announcements.clear();
    g.announcements.insert(announcement);
  }
  ledger_.put_group(g);
}

void Actor::pull(Conn& c, const char* where) {
  const std::uint64_t seen = ledger_.max_seen_inbox(uid_);
  const std::uint64_t after = rng_() % 3 == 0 ? seen : rng_() % (seen + 1);
  static constexpr std::uint32_t kLimits[] = {0, 1, 7, 100, 1000, 5000};
  const std::uint32_t limit = kLimits[rng_() % std::size(kLimits)];
  const std::uint32_t effective = limit == 0 ? 100 : std::min<std::uint32_t>(limit, 1000);
  v1::PullReq req;
  req.set_after_seq(after);
  req.set_limit(limit);
  auto answer = c.call(Cmd::kPull, req, kAnswerTimeout);
  if (&c == &conn_ && !answer) unanswered_ = true;
  ledger_.count(std::string(where) + " " + describe(answer));
  if (!answer) return;
  v1::PullResp resp;
  if (!answer->ok() || !answer->parse(resp)) {
    if (answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("{} of {} after {}: {}", where, uid_, after, describe(answer)));
    return;
  }
  if (static_cast<std::uint32_t>(resp.messages_size()) > effective)
    ledger_.violation(fmt::format("{} of {}: {} messages for limit {}", where, uid_, resp.messages_size(), limit));
  if (after < seen && resp.messages_size() == 0)
    ledger_.violation(fmt::format("{} of {} after {}: nothing, though seq {} was seen (cycle {})", where, uid_, after,
                                  seen, ctx_.cycle));
  std::uint64_t expect = after + 1;
  for (const auto& m : resp.messages()) {
    if (m.inbox_seq() != expect) {
      ledger_.violation(fmt::format("{} of {} after {}: seq {} where {} was due (a gap or disorder; cycle {})", where,
                                    uid_, after, m.inbox_seq(), expect, ctx_.cycle));
      break;
    }
    ++expect;
    ledger_.see_inbox(uid_, m.inbox_seq(), m.msg_id(), where);
  }
  if (resp.messages_size() > 0 && rng_() % 2 == 0) {
    v1::AckReq ack;
    ack.set_inbox_seq(resp.messages(resp.messages_size() - 1).inbox_seq());
    c.notify(Cmd::kAck, ack);
  }
}

void Actor::history() {
  v1::HistoryReq req;
  std::string conv;
  auto groups = my_groups(false);
  if (!groups.empty() && rng_() % 2 == 0) {
    req.set_conv_type(v1::GROUP);
    req.set_peer(pick(groups).gid);
    conv = conv_key(v1::GROUP, uid_, req.peer());
  } else {
    req.set_conv_type(v1::C2C);
    req.set_peer(rng_() % 2 ? pick(ctx_.people.actors) : pick(ctx_.people.passive));
    conv = conv_key(v1::C2C, uid_, req.peer());
  }
  const auto seen = ledger_.seen_history(conv);
  const std::uint64_t top = seen.empty() ? 0 : seen.rbegin()->first;
  const std::uint64_t before = rng_() % 2 == 0 || top == 0 ? 0 : 1 + rng_() % (top + 1);
  static constexpr std::uint32_t kLimits[] = {0, 5, 50, 500, 900};
  const std::uint32_t limit = kLimits[rng_() % std::size(kLimits)];
  const std::uint32_t effective = limit == 0 ? 50 : std::min<std::uint32_t>(limit, 500);
  req.set_before_seq(before);
  req.set_limit(limit);
  auto answer = call(Cmd::kHistory, req);
  ledger_.count("HISTORY " + describe(answer));
  if (!answer) return;
  v1::HistoryResp resp;
  if (!answer->ok() || !answer->parse(resp)) {
    if (answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("HISTORY of {} by {}: {}", conv, uid_, describe(answer)));
    return;
  }
  if (static_cast<std::uint32_t>(resp.messages_size()) > effective)
    ledger_.violation(fmt::format("HISTORY of {}: {} messages for limit {}", conv, resp.messages_size(), limit));
  // The newest below before_seq, oldest first, with no gap; the top one is
  // at least what was seen.
  for (int i = 0; i < resp.messages_size(); ++i) {
    const auto& m = resp.messages(i);
    if ((before > 0 && m.conv_seq() >= before) || (i > 0 && m.conv_seq() != resp.messages(i - 1).conv_seq() + 1)) {
      ledger_.violation(fmt::format("HISTORY of {} before {}: conv_seq {} at place {} (a gap or disorder; cycle {})",
                                    conv, before, m.conv_seq(), i, ctx_.cycle));
      break;
    }
    ledger_.see_history(conv, m.conv_seq(), m.msg_id(), "HISTORY");
  }
  const std::uint64_t newest = resp.messages_size() ? resp.messages(resp.messages_size() - 1).conv_seq() : 0;
  const std::uint64_t due = before == 0 ? top : std::min(top, before - 1);
  if (newest < due)
    ledger_.violation(fmt::format("HISTORY of {} before {}: newest conv_seq {} though {} was seen (cycle {})", conv,
                                  before, newest, due, ctx_.cycle));
}

void Actor::report() {
  ReportRecord r;
  r.uid = uid_;
  r.report_id = next_id("r");
  r.topic = "crash-loop";
  r.payload = random_body(2000);
  r.cycle = ctx_.cycle;
  ledger_.add_report(r);
  v1::ReportReq req;
  req.set_report_id(r.report_id);
  req.set_topic(r.topic);
  req.set_payload(r.payload);
  auto answer = call(Cmd::kReport, req);
  ledger_.count("REPORT " + describe(answer));
  if (!answer) return;
  if (answer->ok()) {
    ledger_.answer_report(r.report_id, Outcome::kOk);
  } else if (definite_failure(answer->status())) {
    ledger_.answer_report(r.report_id, Outcome::kFailed);
    if (answer->status() != StatusCode::kRateLimited)
      ledger_.violation(fmt::format("REPORT {} of {}: {}", r.report_id, uid_, describe(answer)));
  }
}

void Actor::relogin() {
  auto answer = conn_.call_empty(Cmd::kLogout, kAnswerTimeout);
  ledger_.count("LOGOUT " + describe(answer));
  drain_pushes();
  if (answer && answer->ok() && !unanswered_) check_session_gapless();
  conn_.close(true);
  device_ = other_device(device_, rng_());
  reconnect();
}

void Actor::second_device() {
  Conn second;
  if (!second.connect(ctx_.port, std::chrono::seconds(2))) return;
  std::string why;
  const v1::DeviceType device = other_device(device_, rng_());
  auto resp = login(second, uid_, ctx_.token(uid_), device, "second", why);
  ledger_.count("second device LOGIN " + (resp ? std::string("OK") : why));
  if (!resp) return;
  const std::uint64_t seen = ledger_.max_seen_inbox(uid_);
  if (resp->inbox_max_seq() < seen)
    ledger_.violation(fmt::format("LOGIN of {} (second device): inbox_max_seq {} below seq {} seen before (cycle {})",
                                  uid_, resp->inbox_max_seq(), seen, ctx_.cycle));
  pull(second, "second device PULL");
  for (auto& f : second.take_started()) {
    v1::MessagePush push;
    if (f.header.cmd == Cmd::kPush && f.parse(push))
      for (const auto& m : push.messages()) ledger_.see_inbox(uid_, m.inbox_seq(), m.msg_id(), "PUSH");
  }
  second.call_empty(Cmd::kLogout, std::chrono::seconds(2));
  second.close(true);
}

void Actor::drain_pushes() {
  std::uint64_t last = 0;
  for (auto& f : conn_.take_started()) {
    if (f.header.cmd == Cmd::kPush) {
      v1::MessagePush push;
      if (!f.parse(push)) {
        ledger_.violation("a PUSH to " + uid_ + " that does not parse");
        continue;
      }
      for (const auto& m : push.messages()) {
        ledger_.see_inbox(uid_, m.inbox_seq(), m.msg_id(), "PUSH");
        last = std::max(last, m.inbox_seq());
        session_seqs_.insert(m.inbox_seq());
      }
      ledger_.count("PUSH");
    } else {
      ledger_.count(fmt::format("server-started {} {}", cmd_name(f.header.cmd), status_name(f.status())));
    }
  }
  if (last > 0 && rng_() % 3 == 0) {
    v1::AckReq ack;
    ack.set_inbox_seq(last);
    conn_.notify(Cmd::kAck, ack);
  }
}

std::optional<Frame> Actor::call(Cmd cmd, const google::protobuf::MessageLite& req) {
  auto answer = conn_.call(cmd, req, kAnswerTimeout);
  if (!answer) unanswered_ = true;
  return answer;
}

void Actor::check_session_gapless() {
  if (session_seqs_.empty()) return;
  const std::uint64_t top = *session_seqs_.rbegin();
  for (std::uint64_t seq = login_max_ + 1; seq <= top; ++seq) {
    if (session_seqs_.count(seq)) continue;
    ledger_.violation(
        fmt::format("session of {} (LOGIN at inbox_max_seq {}): inbox seq {} came neither by PUSH nor "
                    "in a SendResp, though seq {} did (cycle {})",
                    uid_, login_max_, seq, top, ctx_.cycle));
    return;
  }
}

// ---------------------------------------------------------------- AdminActor

LoadThreads::LoadThreads(const LoadContext& ctx, std::mt19937_64& rng)
    : stop_(ctx.stop),
      actors_([&] {
        std::vector<std::unique_ptr<Actor>> actors;
        for (const auto& uid : ctx.people.actors) actors.push_back(std::make_unique<Actor>(ctx, uid, rng()));
        return actors;
      }()),
      admin_(ctx, rng()) {}

void LoadThreads::start() {
  for (auto& a : actors_) threads_.emplace_back([&a] { a->run(); });
  threads_.emplace_back([this] { admin_.run(); });
}

LoadThreads::~LoadThreads() {
  if (std::none_of(threads_.begin(), threads_.end(), [](const std::thread& t) { return t.joinable(); })) return;
  stop_->store(true);
  join();
}

void LoadThreads::join() {
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

AdminActor::AdminActor(const LoadContext& ctx, std::uint64_t seed) : ctx_(ctx), ledger_(*ctx.ledger), rng_(seed) {}

void AdminActor::run() {
  while (!ctx_.stop->load()) {
    if (rng_() % 10 < 6) {
      send_as();
    } else {
      persisted_push();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5 + rng_() % 20) + ctx_.pause);
  }
}

namespace {

struct AdminAnswer {
  bool answered = false;
  int status = 0;
  nlohmann::json body;
};

AdminAnswer admin_post(const LoadContext& ctx, const std::string& path, const nlohmann::json& body) {
  httplib::Client cli("127.0.0.1", ctx.admin_port);
  cli.set_connection_timeout(2, 0);
  cli.set_read_timeout(15, 0);
  auto r = cli.Post(path.c_str(), {{"Authorization", "Bearer " + ctx.admin_key}}, body.dump(), "application/json");
  AdminAnswer a;
  if (!r) return a;
  a.answered = true;
  a.status = r->status;
  a.body = nlohmann::json::parse(r->body, nullptr, false);
  return a;
}

std::uint64_t json_u64(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return 0;
  return std::stoull(j[key].get<std::string>());
}

}  // namespace

void AdminActor::send_as() {
  SendRecord r;
  r.admin = true;
  r.from = ctx_.people.passive[rng_() % ctx_.people.passive.size()];
  r.cmid = fmt::format("admin.{}.{}", ctx_.cycle, ++counter_);
  r.type = v1::C2C;
  auto peers = ctx_.people.actors;
  peers.insert(peers.end(), ctx_.people.passive.begin(), ctx_.people.passive.end());
  r.to = peers[rng_() % peers.size()];
  r.content_type = static_cast<std::uint32_t>(rng_() % 10000);
  r.body = random_bytes(rng_, 200);
  r.cycle = ctx_.cycle;
  ledger_.add_send(r);
  auto a = admin_post(ctx_, "/v1/messages",
                      {{"from", r.from},
                       {"conv_type", "c2c"},
                       {"to", r.to},
                       {"content_type", r.content_type},
                       {"body", base64_encode(r.body)},
                       {"client_msg_id", r.cmid}});
  ledger_.count(a.answered ? fmt::format("admin POST /v1/messages {}", a.status) : "admin POST /v1/messages no answer");
  if (!a.answered || a.status == 503) return;  // unknown
  if (a.status != 200) {
    r.outcome = Outcome::kFailed;
    ledger_.set_send({r.from, r.cmid}, r);
    ledger_.violation(fmt::format("admin POST /v1/messages {}: {} {}", r.cmid, a.status, a.body.dump()));
    return;
  }
  r.outcome = Outcome::kOk;
  r.msg_id = json_u64(a.body, "msg_id");
  r.conv_seq = json_u64(a.body, "conv_seq");
  r.duplicate = a.body.value("duplicate", false);
  if (r.duplicate) ledger_.violation("admin POST /v1/messages " + r.cmid + ": a first attempt answered duplicate");
  ledger_.set_send({r.from, r.cmid}, r);
  ledger_.see_history(conv_key(v1::C2C, r.from, r.to), r.conv_seq, r.msg_id, "admin answer");
}

void AdminActor::persisted_push() {
  PushRecord p;
  auto all = ctx_.people.all();
  p.to = all[rng_() % all.size()];
  p.topic = fmt::format("t{}", rng_() % 10);
  p.payload = random_bytes(rng_, 200);
  p.cycle = ctx_.cycle;
  auto a = admin_post(ctx_, "/v1/push",
                      {{"to", p.to}, {"topic", p.topic}, {"payload", base64_encode(p.payload)}, {"persist", true}});
  ledger_.count(a.answered ? fmt::format("admin POST /v1/push {}", a.status) : "admin POST /v1/push no answer");
  if (a.answered && a.status == 200) {
    p.outcome = Outcome::kOk;
    p.push_id = json_u64(a.body, "push_id");
  } else if (a.answered && a.status != 503) {
    p.outcome = Outcome::kFailed;
    ledger_.violation(fmt::format("admin POST /v1/push to {}: {} {}", p.to, a.status, a.body.dump()));
  }
  ledger_.add_push(p);
}

}  // namespace im::stress
