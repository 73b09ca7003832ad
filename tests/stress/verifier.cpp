#include "verifier.h"

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

std::string short_id(const SendRecord& r) {
  return fmt::format("{} {} of {} to {} (cycle {}{})", r.admin ? "admin SEND" : "SEND", r.cmid, r.from, r.to, r.cycle,
                     r.resolved ? ", settled by a retry" : "");
}

// The first difference of two conv_seq -> msg_id maps, "" when equal.
std::string first_difference(const std::map<std::uint64_t, std::uint64_t>& history,
                             const std::map<std::uint64_t, std::uint64_t>& inbox) {
  for (const auto& [seq, id] : history) {
    auto it = inbox.find(seq);
    if (it == inbox.end()) return fmt::format("history has conv_seq {} (msg_id {}), the inbox lacks it", seq, id);
    if (it->second != id)
      return fmt::format("conv_seq {} is msg_id {} in history, msg_id {} in the inbox", seq, id, it->second);
  }
  for (const auto& [seq, id] : inbox)
    if (!history.count(seq)) return fmt::format("the inbox has conv_seq {} (msg_id {}), history lacks it", seq, id);
  return "";
}

}  // namespace

Verifier::Verifier(const LoadContext& ctx) : ctx_(ctx), ledger_(*ctx.ledger) {}

Conn* Verifier::as(const std::string& uid) {
  auto& slot = conns_[uid];
  if (slot && slot->open()) {
    slot->take_started();
    return slot.get();
  }
  slot = std::make_unique<Conn>();
  if (!slot->connect(ctx_.port)) {
    ledger_.violation(fmt::format("verifier: cannot connect as {} (cycle {})", uid, ctx_.cycle));
    slot.reset();
    return nullptr;
  }
  std::string why;
  auto resp = login(*slot, uid, ctx_.token(uid), v1::DESKTOP, "verifier", why);
  if (!resp) {
    ledger_.violation(fmt::format("verifier: LOGIN of {} after the restart: {} (cycle {})", uid, why, ctx_.cycle));
    slot.reset();
    return nullptr;
  }
  const std::uint64_t seen = ledger_.max_seen_inbox(uid);
  if (resp->inbox_max_seq() < seen)
    ledger_.violation(fmt::format("LOGIN of {} after the restart: inbox_max_seq {} below seq {} seen before (cycle {})",
                                  uid, resp->inbox_max_seq(), seen, ctx_.cycle));
  if (resp->acked_seq() > resp->inbox_max_seq())
    ledger_.violation(fmt::format("LOGIN of {} after the restart: acked_seq {} above inbox_max_seq {} (cycle {})", uid,
                                  resp->acked_seq(), resp->inbox_max_seq(), ctx_.cycle));
  return slot.get();
}

std::vector<v1::Message> Verifier::pull_all(Conn& c, const std::string& uid) {
  std::vector<v1::Message> out;
  std::uint64_t after = 0;
  for (int page = 0; page < 100000; ++page) {
    v1::PullReq req;
    req.set_after_seq(after);
    req.set_limit(1000);
    auto answer = c.call(Cmd::kPull, req, kAnswerTimeout);
    v1::PullResp resp;
    if (!answer || !answer->ok() || !answer->parse(resp)) {
      ledger_.violation(fmt::format("verifier: PULL of {} after {}: {}", uid, after, describe(answer)));
      break;
    }
    for (auto& m : *resp.mutable_messages()) out.push_back(std::move(m));
    if (resp.messages_size() == 0 || !resp.has_more()) break;
    after = out.back().inbox_seq();
  }
  c.take_started();
  return out;
}

std::vector<v1::Message> Verifier::history_all(Conn& c, v1::ConvType type, const std::string& peer, bool& ok) {
  std::vector<v1::Message> out;
  std::uint64_t before = 0;
  ok = true;
  for (int page = 0; page < 100000; ++page) {
    v1::HistoryReq req;
    req.set_conv_type(type);
    req.set_peer(peer);
    req.set_before_seq(before);
    req.set_limit(500);
    auto answer = c.call(Cmd::kHistory, req, kAnswerTimeout);
    v1::HistoryResp resp;
    if (!answer || !answer->ok() || !answer->parse(resp)) {
      ledger_.violation(fmt::format("verifier: HISTORY of {} before {}: {}", peer, before, describe(answer)));
      ok = false;
      break;
    }
    out.insert(out.begin(), resp.messages().begin(), resp.messages().end());
    if (!resp.has_more() || resp.messages_size() == 0) break;
    before = resp.messages(0).conv_seq();
  }
  return out;
}

// ---------------------------------------------------------------- resolve

void Verifier::retry_send(SendRecord r, bool acknowledged) {
  bool answered = false, ok = false, duplicate = false;
  std::uint64_t msg_id = 0, conv_seq = 0, inbox_seq = 0;
  std::string what;
  if (r.admin) {
    httplib::Client cli("127.0.0.1", ctx_.admin_port);
    cli.set_connection_timeout(2, 0);
    cli.set_read_timeout(15, 0);
    nlohmann::json body = {{"from", r.from},
                           {"conv_type", "c2c"},
                           {"to", r.to},
                           {"content_type", r.content_type},
                           {"body", base64_encode(r.body)},
                           {"client_msg_id", r.cmid}};
    auto res =
        cli.Post("/v1/messages", {{"Authorization", "Bearer " + ctx_.admin_key}}, body.dump(), "application/json");
    answered = static_cast<bool>(res);
    if (res) {
      what = fmt::format("HTTP {} {}", res->status, res->body.substr(0, 200));
      auto j = nlohmann::json::parse(res->body, nullptr, false);
      ok = res->status == 200 && j.is_object() && j.contains("msg_id") && j["msg_id"].is_string();
      if (ok) {
        msg_id = std::stoull(j["msg_id"].get<std::string>());
        conv_seq = std::stoull(j.value("conv_seq", "0"));
        duplicate = j.value("duplicate", false);
      }
    } else {
      what = "no answer";
    }
  } else {
    Conn* c = as(r.from);
    if (!c) return;
    auto answer = c->call(Cmd::kSend, send_req(r), kAnswerTimeout);
    answered = answer.has_value();
    what = describe(answer);
    v1::SendResp resp;
    ok = answer && answer->ok() && answer->parse(resp);
    if (ok) {
      msg_id = resp.msg_id();
      conv_seq = resp.conv_seq();
      inbox_seq = resp.inbox_seq();
      duplicate = resp.duplicate();
    }
  }
  if (!answered) {
    ledger_.violation(fmt::format("a retry of {} after the restart got no answer", short_id(r)));
    return;
  }
  if (acknowledged) {
    ++resolved_.dedupe_checked;
    if (!ok || !duplicate || msg_id != r.msg_id || conv_seq != r.conv_seq || (!r.admin && inbox_seq != r.inbox_seq))
      ledger_.violation(fmt::format(
          "dedupe across the restart: {} was acknowledged as msg_id {} conv_seq {} inbox_seq {}; sent again: {}, "
          "duplicate {}, msg_id {} conv_seq {} inbox_seq {}",
          short_id(r), r.msg_id, r.conv_seq, r.inbox_seq, what, duplicate, msg_id, conv_seq, inbox_seq));
    return;
  }
  ++resolved_.retried;
  if (!ok) {
    ++resolved_.still_unknown;
    ledger_.count("retry of an unknown SEND: " + what);
    return;
  }
  (duplicate ? resolved_.were_stored : resolved_.stored_now)++;
  r.outcome = Outcome::kOk;
  r.resolved = true;
  r.session = 0;
  r.msg_id = msg_id;
  r.conv_seq = conv_seq;
  r.inbox_seq = inbox_seq;
  r.duplicate = duplicate;
  ledger_.set_send({r.from, r.cmid}, r);
  ledger_.see_inbox(r.from, inbox_seq, msg_id, "SendResp of a retry");
  ledger_.see_history(conv_key(r.type, r.from, r.to), conv_seq, msg_id, "SendResp of a retry");
}

void Verifier::resolve(std::mt19937_64& rng, std::size_t sample) {
  resolved_ = {};
  auto sends = ledger_.sends();
  std::vector<SendRecord> acked;
  for (auto& r : sends) {
    if (r.outcome == Outcome::kUnknown) {
      retry_send(r, false);
    } else if (r.outcome == Outcome::kOk) {
      // A SEND to a dismissed group: which answer wins (the dedupe's
      // original or NOT_FOUND) the protocol does not say; not sampled.
      if (r.type == v1::GROUP) {
        auto g = ledger_.group(r.to);
        if (!g || g->life != GroupRecord::Life::kLive) continue;
      }
      acked.push_back(r);
    }
  }
  std::shuffle(acked.begin(), acked.end(), rng);
  if (acked.size() > sample) acked.resize(sample);
  for (auto& r : acked) retry_send(r, true);

  for (auto& r : ledger_.reports()) {
    if (r.outcome != Outcome::kUnknown) continue;
    Conn* c = as(r.uid);
    if (!c) continue;
    v1::ReportReq req;
    req.set_report_id(r.report_id);
    req.set_topic(r.topic);
    req.set_payload(r.payload);
    auto answer = c->call(Cmd::kReport, req, kAnswerTimeout);
    ++resolved_.reports_retried;
    if (answer && answer->ok()) ledger_.answer_report(r.report_id, Outcome::kOk);
  }
}

// ---------------------------------------------------------------- groups

std::optional<std::pair<v1::Group, std::set<std::string>>> Verifier::get_group(const GroupRecord& g,
                                                                               StatusCode& status) {
  status = StatusCode::kOk;
  Conn* c = as(g.owner);
  if (!c) {
    status = StatusCode::kUnavailable;
    return std::nullopt;
  }
  std::pair<v1::Group, std::set<std::string>> out;
  std::string after;
  for (int page = 0; page < 1000; ++page) {
    v1::GroupGetReq req;
    req.set_gid(g.gid);
    req.set_with_members(true);
    req.set_members_after(after);
    req.set_members_limit(1000);
    auto answer = c->call(Cmd::kGroupGet, req, kAnswerTimeout);
    v1::GroupResp resp;
    if (!answer || !answer->ok() || !answer->parse(resp)) {
      status = answer ? answer->status() : StatusCode::kUnavailable;
      if (!answer) ledger_.violation(fmt::format("verifier: GROUP_GET {}: no answer", g.gid));
      return std::nullopt;
    }
    out.first = resp.group();
    out.second.insert(resp.members().begin(), resp.members().end());
    if (!resp.members_more() || resp.members_size() == 0) break;
    after = resp.members(resp.members_size() - 1);
  }
  return out;
}

void Verifier::check_groups() {
  using Life = GroupRecord::Life;
  for (GroupRecord g : ledger_.groups()) {
    if (g.life == Life::kAbsent) continue;
    StatusCode status;
    if (g.life == Life::kDismissed) {
      if (g.dismiss_checked) continue;
      g.dismiss_checked = true;
      ledger_.put_group(g);
      if (get_group(g, status) || status != StatusCode::kNotFound)
        ledger_.violation(fmt::format("dismissed group {}: GROUP_GET answered {} (cycle {})", g.gid,
                                      status_name(status), ctx_.cycle));
      Conn* c = as(g.owner);
      if (!c) continue;
      v1::SendReq send;
      send.set_client_msg_id(fmt::format("{}.after-dismiss.{}", g.gid, ctx_.cycle));
      send.set_conv_type(v1::GROUP);
      send.set_to(g.gid);
      send.set_body("after dismiss");
      auto answer = c->call(Cmd::kSend, send, kAnswerTimeout);
      if (!answer || answer->status() != StatusCode::kNotFound) {
        ledger_.violation(fmt::format("SEND to dismissed group {} after the restart: {}, not NOT_FOUND (cycle {})",
                                      g.gid, describe(answer), ctx_.cycle));
        if (answer && answer->ok()) {
          SendRecord r;
          r.from = g.owner;
          r.cmid = send.client_msg_id();
          r.type = v1::GROUP;
          r.to = g.gid;
          r.body = send.body();
          r.cycle = ctx_.cycle;
          ledger_.add_send(r);
          ledger_.answer_send({r.from, r.cmid}, answer);
        }
      }
      v1::GroupCreateReq create;
      create.set_gid(g.gid);
      create.set_name("reuse");
      answer = c->call(Cmd::kGroupCreate, create, kAnswerTimeout);
      if (!answer || answer->status() != StatusCode::kConflict)
        ledger_.violation(fmt::format("GROUP_CREATE with dismissed gid {}: {}, not CONFLICT (cycle {})", g.gid,
                                      describe(answer), ctx_.cycle));
      continue;
    }
    auto got = get_group(g, status);
    if (!got) {
      if (status == StatusCode::kNotFound && (g.life == Life::kMaybeCreated || g.life == Life::kMaybeDismissed)) {
        g.life = g.life == Life::kMaybeCreated ? Life::kAbsent : Life::kDismissed;
        ledger_.put_group(g);
      } else if (status != StatusCode::kUnavailable) {
        ledger_.violation(fmt::format("group {} (owner {}): GROUP_GET answered {} (cycle {})", g.gid, g.owner,
                                      status_name(status), ctx_.cycle));
      }
      continue;
    }
    const auto& [group, members] = *got;
    if (g.life == Life::kMaybeCreated && members != g.created_with)
      ledger_.violation(fmt::format("group {}, created without an answer: {} members, {} asked (cycle {})", g.gid,
                                    members.size(), g.created_with.size(), ctx_.cycle));
    g.life = Life::kLive;
    if (group.owner() != g.owner)
      ledger_.violation(fmt::format("group {}: owner {}, created by {}", g.gid, group.owner(), g.owner));
    for (const auto& u : g.stable)
      if (!members.count(u))
        ledger_.violation(
            fmt::format("group {}: member {} (never removed) is missing (cycle {})", g.gid, u, ctx_.cycle));
    for (const auto& u : members)
      if (!g.stable.count(u) &&
          std::find(ctx_.people.churn.begin(), ctx_.people.churn.end(), u) == ctx_.people.churn.end())
        ledger_.violation(fmt::format("group {}: {} is a member, never added", g.gid, u));
    if (group.member_count() != members.size())
      ledger_.violation(
          fmt::format("group {}: member_count {}, {} members listed", g.gid, group.member_count(), members.size()));
    if (!g.names.count(group.name()))
      ledger_.violation(
          fmt::format("group {}: name \"{}\" is none of the {} acknowledged or unanswered ones (cycle {})", g.gid,
                      group.name(), g.names.size(), ctx_.cycle));
    if (!g.announcements.count(group.announcement()))
      ledger_.violation(
          fmt::format("group {}: the announcement \"{:.40}\" is none of the {} acknowledged or "
                      "unanswered ones (cycle {})",
                      g.gid, group.announcement(), g.announcements.size(), ctx_.cycle));
    g.names = {group.name()};
    g.announcements = {group.announcement()};
    ledger_.put_group(g);
  }
}

// ---------------------------------------------------------------- messages

void Verifier::check_messages(std::chrono::seconds settle) {
  const auto sends = ledger_.sends();
  const auto pushes = ledger_.pushes();
  std::map<std::string, GroupRecord> groups;
  for (auto& g : ledger_.groups()) groups[g.gid] = g;
  std::map<Ledger::SendKey, const SendRecord*> by_key;
  std::map<std::uint64_t, const SendRecord*> acked_by_id;
  std::map<std::string, std::set<std::uint64_t>> expect;
  for (const auto& r : sends) {
    by_key[{r.from, r.cmid}] = &r;
    if (r.outcome != Outcome::kOk) continue;
    acked_by_id[r.msg_id] = &r;
    if (r.type == v1::C2C) {
      expect[r.from].insert(r.msg_id);
      expect[r.to].insert(r.msg_id);
    } else if (auto it = groups.find(r.to); it != groups.end()) {
      for (const auto& u : it->second.stable) expect[u].insert(r.msg_id);
    }
  }
  for (const auto& p : pushes)
    if (p.outcome == Outcome::kOk) expect[p.to].insert(p.push_id);

  // Every inbox, once it holds what it must (group fan-out and the retries'
  // copies land after their answers): at most `settle` in all.
  const auto deadline = std::chrono::steady_clock::now() + settle;
  std::map<std::string, std::vector<v1::Message>> inbox;
  for (const auto& u : ctx_.people.all()) {
    Conn* c = as(u);
    if (!c) continue;
    for (;;) {
      inbox[u] = pull_all(*c, u);
      std::set<std::uint64_t> have;
      for (const auto& m : inbox[u]) have.insert(m.msg_id());
      const bool complete = std::includes(have.begin(), have.end(), expect[u].begin(), expect[u].end());
      if (complete || std::chrono::steady_clock::now() >= deadline) break;
      ledger_.count("verifier: an inbox pulled again (not complete yet)");
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  std::map<Ledger::SendKey, std::set<std::uint64_t>> stored;  // everywhere
  msg_ids_.clear();
  // A msg_id names one conversation row, wherever it is read.
  auto note_id = [&](const std::string& conv, const v1::Message& m, const std::string& where) {
    const std::string row = fmt::format("{} conv_seq {}", conv, m.conv_seq());
    auto [it, fresh] = msg_ids_.emplace(m.msg_id(), row);
    if (!fresh && it->second != row)
      ledger_.violation(fmt::format("{}: msg_id {} is {}, and elsewhere {} (cycle {})", where, m.msg_id(), row,
                                    it->second, ctx_.cycle));
  };
  // uid -> conv -> conv_seq -> msg_id
  std::map<std::string, std::map<std::string, std::map<std::uint64_t, std::uint64_t>>> inbox_convs;
  auto check_content = [&](const v1::Message& m, const std::string& where) {
    if (m.content_type() >= 10000 || m.from().empty()) return;
    Ledger::SendKey key{m.from(), m.client_msg_id()};
    stored[key].insert(m.msg_id());
    auto it = by_key.find(key);
    if (it == by_key.end()) {
      ledger_.violation(fmt::format("{}: msg_id {} from {} with client_msg_id \"{}\" that nobody sent", where,
                                    m.msg_id(), m.from(), m.client_msg_id()));
      return;
    }
    const SendRecord& r = *it->second;
    if (m.conv_type() != r.type || m.to() != r.to || m.content_type() != r.content_type || m.body() != r.body)
      ledger_.violation(
          fmt::format("{}: msg_id {} ({}) does not hold what was sent (type {} to {} content_type {}, "
                      "{} body bytes; sent type {} to {} content_type {}, {} bytes)",
                      where, m.msg_id(), short_id(r), static_cast<int>(m.conv_type()), m.to(), m.content_type(),
                      m.body().size(), static_cast<int>(r.type), r.to, r.content_type, r.body.size()));
    if (r.outcome == Outcome::kOk && (m.msg_id() != r.msg_id || m.conv_seq() != r.conv_seq))
      ledger_.violation(fmt::format("{}: {} stored as msg_id {} conv_seq {}, acknowledged as msg_id {} conv_seq {}",
                                    where, short_id(r), m.msg_id(), m.conv_seq(), r.msg_id, r.conv_seq));
  };

  read_ = {};
  for (const auto& [u, rows] : inbox) {
    ++read_.inboxes;
    read_.inbox_rows += rows.size();
    const std::string where = "inbox of " + u;
    std::map<std::uint64_t, const v1::Message*> by_seq;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      by_seq[rows[i].inbox_seq()] = &rows[i];
      if (rows[i].inbox_seq() != i + 1) {
        ledger_.violation(fmt::format("{}: seq {} at place {} (a gap, a repeat or disorder; cycle {})", where,
                                      rows[i].inbox_seq(), i + 1, ctx_.cycle));
        break;
      }
    }
    for (const auto& [seq, id] : ledger_.seen_inbox(u)) {
      auto it = by_seq.find(seq);
      if (it == by_seq.end())
        ledger_.violation(
            fmt::format("{}: seq {} (msg_id {}) was seen and is gone (cycle {})", where, seq, id, ctx_.cycle));
      else if (it->second->msg_id() != id)
        ledger_.violation(fmt::format("{}: seq {} was msg_id {}, now msg_id {} (cycle {})", where, seq, id,
                                      it->second->msg_id(), ctx_.cycle));
    }
    std::map<Ledger::SendKey, int> per_key;
    std::map<std::uint64_t, int> per_id;
    std::map<std::string, std::uint64_t> last_conv_seq;
    for (const auto& m : rows) {
      ++per_id[m.msg_id()];
      const std::string conv = conv_of(u, m);
      note_id(conv, m, where);
      if (m.conv_seq() > 0) {
        auto [it, fresh] = inbox_convs[u][conv].emplace(m.conv_seq(), m.msg_id());
        if (!fresh)
          ledger_.violation(fmt::format("{}: {} conv_seq {} twice (msg_ids {} and {}; cycle {})", where, conv,
                                        m.conv_seq(), it->second, m.msg_id(), ctx_.cycle));
        std::uint64_t& last = last_conv_seq[conv];
        if (m.conv_seq() <= last && fresh)
          ledger_.violation(fmt::format("{}: {} conv_seq {} at inbox seq {} after conv_seq {} (disorder; cycle {})",
                                        where, conv, m.conv_seq(), m.inbox_seq(), last, ctx_.cycle));
        last = std::max(last, m.conv_seq());
      }
      if (m.content_type() < 10000 && !m.from().empty()) {
        if (++per_key[{m.from(), m.client_msg_id()}] == 2)
          ledger_.violation(fmt::format("{}: from {} client_msg_id {} stored twice (cycle {})", where, m.from(),
                                        m.client_msg_id(), ctx_.cycle));
        check_content(m, where);
      }
    }
    for (std::uint64_t id : expect[u]) {
      const int n = per_id[id];
      if (n == 1) continue;
      auto it = acked_by_id.find(id);
      ledger_.violation(fmt::format("{}: acknowledged msg_id {} ({}) is there {} times (cycle {})", where, id,
                                    it != acked_by_id.end() ? short_id(*it->second) : "a persisted push", n,
                                    ctx_.cycle));
    }
    for (const auto& r : sends) {
      if (r.from != u || r.outcome != Outcome::kOk || r.inbox_seq == 0) continue;
      auto it = by_seq.find(r.inbox_seq);
      if (it == by_seq.end() || it->second->msg_id() != r.msg_id)
        ledger_.violation(fmt::format("{}: {} was answered with inbox_seq {}, which holds {}", where, short_id(r),
                                      r.inbox_seq,
                                      it == by_seq.end() ? "nothing" : std::to_string(it->second->msg_id())));
    }
    // The user's SYSTEM conversation lives in the inbox only: gapless there.
    const auto& system = inbox_convs[u][conv_key(v1::SYSTEM, u, u)];
    if (!system.empty() && (system.begin()->first != 1 || system.rbegin()->first != system.size()))
      ledger_.violation(fmt::format("{}: the SYSTEM conversation's conv_seqs are not 1..{} (cycle {})", where,
                                    system.size(), ctx_.cycle));
    // Persisted pushes: each acknowledged one once, with its payload; an
    // unanswered one at most once; nothing else.
    std::vector<const PushRecord*> mine;
    for (const auto& p : pushes)
      if (p.to == u && p.outcome != Outcome::kFailed) mine.push_back(&p);
    std::map<const PushRecord*, int> found;
    for (const auto& m : rows) {
      if (m.content_type() != 10002) continue;
      const PushRecord* match = nullptr;
      for (const PushRecord* p : mine)
        if (p->topic == m.topic() && p->payload == m.body()) match = p;
      if (!match) {
        ledger_.violation(
            fmt::format("{}: a stored push (msg_id {}, topic {}) nobody sent", where, m.msg_id(), m.topic()));
        continue;
      }
      ++found[match];
      if (match->outcome == Outcome::kOk && match->push_id != m.msg_id())
        ledger_.violation(fmt::format("{}: push {} stored as msg_id {}", where, match->push_id, m.msg_id()));
    }
    for (const PushRecord* p : mine)
      if (found[p] > 1 || (p->outcome == Outcome::kOk && found[p] != 1))
        ledger_.violation(
            fmt::format("{}: persisted push {} (cycle {}) is there {} times", where, p->push_id, p->cycle, found[p]));
  }

  // Histories: gapless, each message once, and the same rows as every
  // stable participant's inbox holds for the conversation.
  auto check_history = [&](const std::string& conv, const std::vector<v1::Message>& rows,
                           const std::set<std::string>& participants) {
    const std::string where = "history of " + conv;
    ++read_.histories;
    read_.history_rows += rows.size();
    std::map<std::uint64_t, std::uint64_t> map;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      if (rows[i].conv_seq() != i + 1) {
        ledger_.violation(fmt::format("{}: conv_seq {} at place {} (a gap, a repeat or disorder; cycle {})", where,
                                      rows[i].conv_seq(), i + 1, ctx_.cycle));
        break;
      }
    }
    std::map<Ledger::SendKey, int> per_key;
    for (const auto& m : rows) {
      map.emplace(m.conv_seq(), m.msg_id());
      note_id(conv, m, where);
      if (m.content_type() < 10000 && !m.from().empty()) {
        if (++per_key[{m.from(), m.client_msg_id()}] == 2)
          ledger_.violation(fmt::format("{}: from {} client_msg_id {} stored twice (cycle {})", where, m.from(),
                                        m.client_msg_id(), ctx_.cycle));
        check_content(m, where);
      }
    }
    for (const auto& [seq, id] : ledger_.seen_history(conv)) {
      auto it = map.find(seq);
      if (it == map.end() || it->second != id)
        ledger_.violation(fmt::format("{}: conv_seq {} was msg_id {}, now {} (cycle {})", where, seq, id,
                                      it == map.end() ? "nothing" : std::to_string(it->second), ctx_.cycle));
    }
    for (const auto& u : participants) {
      const auto convs = inbox_convs.find(u);
      if (!inbox.count(u)) continue;
      static const std::map<std::uint64_t, std::uint64_t> kNone;
      const auto& mine = convs == inbox_convs.end() || !convs->second.count(conv) ? kNone : convs->second.at(conv);
      const std::string diff = first_difference(map, mine);
      if (!diff.empty())
        ledger_.violation(fmt::format("{} against the inbox of {}: {} (cycle {})", where, u, diff, ctx_.cycle));
    }
  };
  std::set<std::pair<std::string, std::string>> pairs;
  for (const auto& r : sends)
    if (r.type == v1::C2C && r.outcome != Outcome::kFailed) pairs.insert(std::minmax(r.from, r.to));
  for (const auto& [a, b] : pairs) {
    Conn* c = as(a);
    if (!c) continue;
    bool ok = false;
    auto rows = history_all(*c, v1::C2C, b, ok);
    if (ok) check_history(conv_key(v1::C2C, a, b), rows, {a, b});
  }
  for (const auto& [gid, g] : groups) {
    const std::string conv = conv_key(v1::GROUP, g.owner, gid);
    if (g.life == GroupRecord::Life::kLive) {
      Conn* c = as(g.owner);
      if (!c) continue;
      bool ok = false;
      auto rows = history_all(*c, v1::GROUP, gid, ok);
      if (!ok) continue;
      if (rows.empty() || rows[0].content_type() != 10001)
        ledger_.violation(fmt::format("history of {}: conv_seq 1 is not the CREATED event", conv));
      check_history(conv, rows, g.stable);
    } else if (g.life == GroupRecord::Life::kDismissed) {
      // No history any more: the stable members' inboxes agree, gapless.
      const std::map<std::uint64_t, std::uint64_t>* first = nullptr;
      for (const auto& u : g.stable) {
        auto convs = inbox_convs.find(u);
        if (convs == inbox_convs.end() || !convs->second.count(conv)) continue;
        const auto& mine = convs->second.at(conv);
        if (mine.begin()->first != 1 || mine.rbegin()->first != mine.size())
          ledger_.violation(fmt::format("inbox of {}: dismissed {} has conv_seqs with a gap", u, conv));
        if (!first) {
          first = &mine;
        } else if (auto diff = first_difference(*first, mine); !diff.empty()) {
          ledger_.violation(fmt::format("dismissed {}: the inboxes of its members differ: {}", conv, diff));
        }
      }
    }
  }

  // Every SEND: acknowledged ones stored exactly once as answered, unknown
  // ones at most once, failed ones nowhere.
  for (const auto& r : sends) {
    const auto it = stored.find({r.from, r.cmid});
    const std::size_t n = it == stored.end() ? 0 : it->second.size();
    if (r.outcome == Outcome::kOk && n == 0)
      ledger_.violation(fmt::format("LOST: {} acknowledged as msg_id {} conv_seq {} is stored nowhere", short_id(r),
                                    r.msg_id, r.conv_seq));
    else if (n > 1)
      ledger_.violation(fmt::format("DUPLICATED: {} is stored as {} different messages", short_id(r), n));
    else if (r.outcome == Outcome::kFailed && n > 0)
      ledger_.violation(fmt::format("{} was refused ({}) yet is stored", short_id(r), status_name(r.status)));
  }

  // One connection's SENDs to one conversation got increasing conv_seqs.
  std::map<std::pair<std::uint64_t, std::string>, std::vector<const SendRecord*>> by_session;
  for (const auto& r : sends)
    if (r.outcome == Outcome::kOk && r.session > 0 && !r.resolved && !r.duplicate)
      by_session[{r.session, conv_key(r.type, r.from, r.to)}].push_back(&r);
  for (auto& [key, list] : by_session) {
    std::sort(list.begin(), list.end(), [](auto* a, auto* b) { return a->order < b->order; });
    for (std::size_t i = 1; i < list.size(); ++i)
      if (list[i]->conv_seq <= list[i - 1]->conv_seq) {
        ledger_.violation(fmt::format("{} sent after {} on one connection got conv_seq {} <= {}", short_id(*list[i]),
                                      list[i - 1]->cmid, list[i]->conv_seq, list[i - 1]->conv_seq));
        break;
      }
  }
}

// ---------------------------------------------------------------- reports

void Verifier::check_reports(WebhookSink& sink, std::chrono::seconds within) {
  const auto records = ledger_.reports();
  const auto deadline = std::chrono::steady_clock::now() + within;
  std::map<std::string, WebhookSink::Report> delivered;
  std::vector<const ReportRecord*> missing;
  for (;;) {
    delivered = sink.reports();
    missing.clear();
    for (const auto& r : records)
      if (r.outcome == Outcome::kOk && !delivered.count(r.report_id)) missing.push_back(&r);
    if (missing.empty() || std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  if (!missing.empty()) {
    std::string ids;
    for (std::size_t i = 0; i < missing.size() && i < 10; ++i) ids += " " + missing[i]->report_id;
    ledger_.violation(fmt::format("{} acknowledged REPORTs never reached the webhook within {} s after the restart:{}",
                                  missing.size(), within.count(), ids));
  }
  for (std::uint64_t id : sink.event_ids())
    if (auto it = msg_ids_.find(id); it != msg_ids_.end())
      ledger_.violation(
          fmt::format("webhook event id {} is also the msg_id of {} (one clock makes both; reused?)", id, it->second));
  std::map<std::string, const ReportRecord*> by_id;
  for (const auto& r : records) by_id[r.report_id] = &r;
  const auto people = ctx_.people.all();
  for (const auto& [id, got] : delivered) {
    // Others' reports (the soak's probes) are not this ledger's.
    if (std::find(people.begin(), people.end(), got.uid) == people.end()) continue;
    auto it = by_id.find(id);
    if (it == by_id.end()) {
      ledger_.violation("the webhook got report " + id + ", which nobody sent");
      continue;
    }
    const ReportRecord& r = *it->second;
    if (r.outcome == Outcome::kFailed) ledger_.violation("the webhook got report " + id + ", whose REPORT was refused");
    if (got.uid != r.uid || got.topic != r.topic || got.payload != r.payload)
      ledger_.violation(fmt::format("the webhook's report {} differs from what {} sent", id, r.uid));
  }
}

}  // namespace im::stress
