#include "core/conv_counters.h"

namespace im::core {

Result<ConvCounters::Counter*> ConvCounters::get(const std::string& conv) {
  if (Counter* c = counters_.find(conv)) return c;
  auto last = store_.last_history_seq(conv);
  if (!last) return last.error();
  Counter& c = counters_.put(conv, Counter{*last, *last, nullptr});
  c.conv = counters_.key_of(conv);
  return &c;
}

Result<std::uint64_t> ConvCounters::committed(const std::string& conv) {
  if (const Counter* c = counters_.peek(conv)) return c->committed;
  return store_.last_history_seq(conv);
}

std::size_t ConvCounters::trim() {
  if (!touched_.empty()) return 0;
  return counters_.trim([](const std::string&, const Counter&) { return true; });
}

std::uint64_t ConvCounters::assign(Counter& c, bool searchable) {
  touched_.push_back(&c);
  c.searchable = c.searchable || searchable;
  return ++c.next;
}

void ConvCounters::on_written(bool ok, Committed* committed) {
  for (Counter* c : touched_) {
    if (ok) {
      // A conversation is in `touched_` once per seq: reported at its first.
      if (committed && c->committed != c->next) committed->push_back({*c->conv, c->next, c->searchable});
      c->committed = c->next;
    } else {
      c->next = c->committed;
    }
    c->searchable = false;
  }
  touched_.clear();
}

}  // namespace im::core
