#include "ledger.h"

#include <fmt/format.h>

namespace im::stress {

std::string conv_key(v1::ConvType type, const std::string& a, const std::string& b) {
  switch (type) {
    case v1::C2C: return a < b ? "c:" + a + ":" + b : "c:" + b + ":" + a;
    case v1::GROUP: return "g:" + b;
    case v1::SYSTEM: return "s:" + a;
    default: return "?:" + a + ":" + b;
  }
}

std::string conv_of(const std::string& owner, const v1::Message& m) {
  if (m.conv_type() == v1::C2C) return conv_key(v1::C2C, m.from(), m.to());
  if (m.conv_type() == v1::GROUP) return conv_key(v1::GROUP, owner, m.to());
  return conv_key(m.conv_type(), owner, owner);
}

bool definite_failure(StatusCode status) {
  return status != StatusCode::kOk && status != StatusCode::kUnavailable;
}

void Ledger::add_send(SendRecord r) {
  std::lock_guard lock(mutex_);
  SendKey key{r.from, r.cmid};
  auto [it, fresh] = sends_.emplace(key, std::move(r));
  if (!fresh)
    violations_.push_back(fmt::format("imstress bug: client_msg_id {} of {} used twice", key.second, key.first));
}

void Ledger::answer_send(const SendKey& key, const std::optional<Frame>& answer) {
  std::lock_guard lock(mutex_);
  auto it = sends_.find(key);
  if (it == sends_.end()) return;
  SendRecord& r = it->second;
  if (!answer) {
    r.outcome = Outcome::kUnknown;
    return;
  }
  if (!answer->ok()) {
    r.status = answer->status();
    r.outcome = definite_failure(answer->status()) ? Outcome::kFailed : Outcome::kUnknown;
    return;
  }
  v1::SendResp resp;
  if (!answer->parse(resp)) {
    violations_.push_back(
        fmt::format("SEND {} of {}: an OK answer whose SendResp does not parse", key.second, key.first));
    return;
  }
  r.outcome = Outcome::kOk;
  r.msg_id = resp.msg_id();
  r.conv_seq = resp.conv_seq();
  r.inbox_seq = resp.inbox_seq();
  r.duplicate = resp.duplicate();
  if (r.duplicate)
    violations_.push_back(
        fmt::format("SEND {} of {}: its first attempt answered duplicate = true", key.second, key.first));
  see_inbox_locked(r.from, r.inbox_seq, r.msg_id, "SendResp");
  see_history_locked(conv_key(r.type, r.from, r.to), r.conv_seq, r.msg_id, "SendResp");
}

void Ledger::set_send(const SendKey& key, const SendRecord& r) {
  std::lock_guard lock(mutex_);
  sends_[key] = r;
}

std::optional<SendRecord> Ledger::send(const SendKey& key) {
  std::lock_guard lock(mutex_);
  auto it = sends_.find(key);
  if (it == sends_.end()) return std::nullopt;
  return it->second;
}

std::vector<SendRecord> Ledger::sends() {
  std::lock_guard lock(mutex_);
  std::vector<SendRecord> out;
  out.reserve(sends_.size());
  for (const auto& [k, v] : sends_) out.push_back(v);
  return out;
}

void Ledger::add_report(ReportRecord r) {
  std::lock_guard lock(mutex_);
  const std::string id = r.report_id;
  reports_[id] = std::move(r);
}

void Ledger::answer_report(const std::string& report_id, Outcome outcome) {
  std::lock_guard lock(mutex_);
  auto it = reports_.find(report_id);
  if (it != reports_.end()) it->second.outcome = outcome;
}

std::vector<ReportRecord> Ledger::reports() {
  std::lock_guard lock(mutex_);
  std::vector<ReportRecord> out;
  for (const auto& [k, v] : reports_) out.push_back(v);
  return out;
}

void Ledger::add_push(PushRecord r) {
  std::lock_guard lock(mutex_);
  pushes_.push_back(std::move(r));
}

std::vector<PushRecord> Ledger::pushes() {
  std::lock_guard lock(mutex_);
  return pushes_;
}

void Ledger::put_group(const GroupRecord& g) {
  std::lock_guard lock(mutex_);
  groups_[g.gid] = g;
}

std::optional<GroupRecord> Ledger::group(const std::string& gid) {
  std::lock_guard lock(mutex_);
  auto it = groups_.find(gid);
  if (it == groups_.end()) return std::nullopt;
  return it->second;
}

std::vector<GroupRecord> Ledger::groups() {
  std::lock_guard lock(mutex_);
  std::vector<GroupRecord> out;
  for (const auto& [k, v] : groups_) out.push_back(v);
  return out;
}

void Ledger::see_inbox(const std::string& uid, std::uint64_t inbox_seq, std::uint64_t msg_id, const char* where) {
  std::lock_guard lock(mutex_);
  see_inbox_locked(uid, inbox_seq, msg_id, where);
}

void Ledger::see_history(const std::string& conv, std::uint64_t conv_seq, std::uint64_t msg_id, const char* where) {
  std::lock_guard lock(mutex_);
  see_history_locked(conv, conv_seq, msg_id, where);
}

void Ledger::see_inbox_locked(const std::string& uid, std::uint64_t inbox_seq, std::uint64_t msg_id,
                              const char* where) {
  if (inbox_seq == 0) return;
  auto [it, fresh] = inbox_seen_[uid].emplace(inbox_seq, msg_id);
  if (!fresh && it->second != msg_id)
    violations_.push_back(fmt::format("inbox of {}: seq {} showed msg_id {} before and msg_id {} now ({})", uid,
                                      inbox_seq, it->second, msg_id, where));
}

void Ledger::see_history_locked(const std::string& conv, std::uint64_t conv_seq, std::uint64_t msg_id,
                                const char* where) {
  if (conv_seq == 0) return;
  auto [it, fresh] = history_seen_[conv].emplace(conv_seq, msg_id);
  if (!fresh && it->second != msg_id)
    violations_.push_back(fmt::format("history of {}: conv_seq {} showed msg_id {} before and msg_id {} now ({})", conv,
                                      conv_seq, it->second, msg_id, where));
}

std::map<std::uint64_t, std::uint64_t> Ledger::seen_inbox(const std::string& uid) {
  std::lock_guard lock(mutex_);
  auto it = inbox_seen_.find(uid);
  return it == inbox_seen_.end() ? std::map<std::uint64_t, std::uint64_t>{} : it->second;
}

std::map<std::uint64_t, std::uint64_t> Ledger::seen_history(const std::string& conv) {
  std::lock_guard lock(mutex_);
  auto it = history_seen_.find(conv);
  return it == history_seen_.end() ? std::map<std::uint64_t, std::uint64_t>{} : it->second;
}

std::uint64_t Ledger::max_seen_inbox(const std::string& uid) {
  std::lock_guard lock(mutex_);
  auto it = inbox_seen_.find(uid);
  return it == inbox_seen_.end() || it->second.empty() ? 0 : it->second.rbegin()->first;
}

void Ledger::violation(std::string what) {
  std::lock_guard lock(mutex_);
  violations_.push_back(std::move(what));
}

std::vector<std::string> Ledger::violations() {
  std::lock_guard lock(mutex_);
  return violations_;
}

std::size_t Ledger::violation_count() {
  std::lock_guard lock(mutex_);
  return violations_.size();
}

void Ledger::count(const std::string& what, std::uint64_t n) {
  std::lock_guard lock(mutex_);
  counts_[what] += n;
}

std::map<std::string, std::uint64_t> Ledger::take_counts() {
  std::lock_guard lock(mutex_);
  return std::exchange(counts_, {});
}

}  // namespace im::stress
