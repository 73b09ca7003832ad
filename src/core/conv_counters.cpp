#include "core/conv_counters.h"

namespace im::core {

Result<ConvCounters::Counter*> ConvCounters::get(const std::string& conv) {
  if (auto it = counters_.find(conv); it != counters_.end()) return &it->second;
  auto last = store_.last_history_seq(conv);
  if (!last) return last.error();
  Counter& c = counters_[conv];
  c.next = c.committed = *last;
  return &c;
}

std::uint64_t ConvCounters::assign(Counter& c) {
  touched_.push_back(&c);
  return ++c.next;
}

void ConvCounters::on_written(bool ok) {
  for (Counter* c : touched_) {
    if (ok) {
      c->committed = c->next;
    } else {
      c->next = c->committed;
    }
  }
  touched_.clear();
}

}  // namespace im::core
