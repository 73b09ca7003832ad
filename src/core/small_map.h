#pragma once
// A map from string keys for a handful of entries: one vector, searched
// linearly. A user's device cursors live in one (devices_per_user, default
// 32, at most 1024; most users have one or two): a hash map with one entry
// costs about 250 bytes (its bucket array and node), this about 70, and an
// idle connection's memory is a goal (bench/ANALYSIS.md, W1).
//
// Erasing or adding may move the entries: no iterator or pointer to one is
// kept across either.

#include <algorithm>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace im::core {

template <class V>
class SmallMap {
 public:
  using Entry = std::pair<std::string, V>;
  using iterator = typename std::vector<Entry>::iterator;
  using const_iterator = typename std::vector<Entry>::const_iterator;

  iterator find(std::string_view key) {
    return std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.first == key; });
  }
  // Adds an entry for a key not in the map.
  iterator emplace(std::string key, V value) {
    entries_.emplace_back(std::move(key), std::move(value));
    return std::prev(entries_.end());
  }
  // The last entry takes the erased one's place.
  void erase(iterator it) {
    if (it != std::prev(entries_.end())) *it = std::move(entries_.back());
    entries_.pop_back();
  }
  V& operator[](std::string_view key) {
    auto it = find(key);
    return it != end() ? it->second : emplace(std::string(key), V{})->second;
  }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  iterator begin() { return entries_.begin(); }
  iterator end() { return entries_.end(); }
  const_iterator begin() const { return entries_.begin(); }
  const_iterator end() const { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
};

}  // namespace im::core
