#include "core/offline_pushes.h"

#include "core/outbox_events.h"

namespace im::core {

OfflinePushes::OfflinePushes(asio::io_context& loop, std::chrono::milliseconds delay, Fire fire)
    : timer_(loop), delay_(delay), fire_(std::move(fire)) {}

OfflinePushes::Entry OfflinePushes::make(const std::string& uid, std::uint64_t inbox_seq,
                                         const v1::Message& msg) const {
  Entry e{std::chrono::steady_clock::now() + delay_, uid, inbox_seq, msg};
  cut_body(e.msg);
  return e;
}

void OfflinePushes::cut_body(v1::Message& msg) {
  if (msg.body().size() > kPreviewBytes) msg.mutable_body()->resize(kPreviewBytes);
}

void OfflinePushes::add(std::vector<Entry>& entries) {
  for (auto& e : entries) queue_.push_back(std::move(e));
  entries.clear();
  arm();
}

void OfflinePushes::arm() {
  if (armed_ || queue_.empty()) return;
  armed_ = true;
  timer_.expires_at(queue_.front().due);
  timer_.async_wait([this](const asio::error_code& ec) {
    armed_ = false;
    if (ec) return;
    const auto now = std::chrono::steady_clock::now();
    std::vector<Entry> due;
    while (!queue_.empty() && queue_.front().due <= now) {
      due.push_back(std::move(queue_.front()));
      queue_.pop_front();
    }
    if (!due.empty()) fire_(due);
    arm();
  });
}

}  // namespace im::core
