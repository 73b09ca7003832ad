#include "core/send_dedupe.h"

#include "common/metrics.h"

namespace im::core {

void SendJob::answer(const Result<v1::SendResp>& result) {
  if (answered) return;
  answered = true;
  metrics::get().send_latency.observe(
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  if (done) done(result);
}

std::string SendDedupe::key_of(const SendJob& job) {
  std::string key = job.msg.from();
  key.push_back('\0');
  key.append(job.msg.client_msg_id());
  return key;
}

SendDedupe::Admit SendDedupe::admit(const std::shared_ptr<SendJob>& job) {
  auto [it, added] = inflight_.try_emplace(key_of(*job));
  if (added) {
    it->second.original = job;
    return Admit::kFirst;
  }
  if (it->second.parked.size() >= kMaxParked) return Admit::kRefused;
  it->second.parked.push_back(job);
  return Admit::kParked;
}

std::vector<std::shared_ptr<SendJob>> SendDedupe::finish(const SendJob& original) {
  auto it = inflight_.find(key_of(original));
  if (it == inflight_.end() || it->second.original.get() != &original) return {};
  auto parked = std::move(it->second.parked);
  inflight_.erase(it);
  return parked;
}

std::vector<std::shared_ptr<SendJob>> SendDedupe::overdue(std::chrono::steady_clock::time_point now) {
  std::vector<std::shared_ptr<SendJob>> out;
  for (auto& [key, entry] : inflight_) {
    if (!entry.original->answered && now - entry.original->started > kMaxWait) out.push_back(entry.original);
    // A retry answered now stops waiting (and frees its place).
    std::erase_if(entry.parked, [&](const std::shared_ptr<SendJob>& job) {
      if (now - job->started <= kMaxWait) return false;
      out.push_back(job);
      return true;
    });
  }
  return out;
}

}  // namespace im::core
