#pragma once
// A map from string keys to values that remembers the order of use, so the
// least recently used entries can be dropped once there are more than a
// capacity. Values never move while they are in the map (pointers to them
// stay valid until their entry is erased). The owner decides which entries
// may go: `trim` drops only those its predicate calls idle, and moves the
// others to the front so a trim never walks the same busy entries twice.
//
// Not thread safe: a shard's state, used on its thread only.

#include <algorithm>
#include <cstddef>
#include <string>
#include <unordered_map>
#include <utility>

namespace im::core {

template <class V>
class LruMap {
 public:
  explicit LruMap(std::size_t capacity) : capacity_(capacity) {}
  LruMap(const LruMap&) = delete;
  LruMap& operator=(const LruMap&) = delete;

  // The entry, marked as just used; nullptr when absent.
  V* find(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return nullptr;
    to_front(it->second);
    return &it->second.value;
  }
  // The entry without marking it used.
  const V* peek(const std::string& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  // The entry, changeable, without marking it used.
  V* peek_mut(const std::string& key) {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->second.value;
  }
  // Adds (or replaces) the entry, marked as just used.
  V& put(const std::string& key, V value) {
    auto [it, added] = map_.try_emplace(key);
    Node& node = it->second;
    if (added) {
      node.key = &it->first;
      link_front(node);
    } else {
      to_front(node);
    }
    node.value = std::move(value);
    return node.value;
  }
  // The key of an entry (valid as long as the entry).
  const std::string* key_of(const std::string& key) const {
    auto it = map_.find(key);
    return it == map_.end() ? nullptr : &it->first;
  }
  void erase(const std::string& key) {
    auto it = map_.find(key);
    if (it == map_.end()) return;
    unlink(it->second);
    map_.erase(it);
  }
  std::size_t size() const { return map_.size(); }
  std::size_t capacity() const { return capacity_; }
  bool over() const { return map_.size() > capacity_; }
  std::size_t over_by() const { return over() ? map_.size() - capacity_ : 0; }

  // Drops least recently used entries for which `idle(key, value)` holds
  // until at most `capacity` remain. Looks at each entry at most once, and
  // at most kTrimStep + kTrimSlack of them: when most entries are busy (more
  // sessions than the capacity), a trim after every batch must not walk
  // them all; the busy ones it passes go to the front, so the next trim
  // looks at others.
  static constexpr std::size_t kTrimStep = 4096;
  static constexpr std::size_t kTrimSlack = 256;
  template <class Idle>
  std::size_t trim(Idle&& idle) {
    return trim(std::forward<Idle>(idle), [] { return false; });
  }
  // The same, also going on while `more()` holds (a second bound the owner
  // keeps, such as the entries' total size).
  template <class Idle, class More>
  std::size_t trim(Idle&& idle, More&& more) {
    std::size_t dropped = 0;
    std::size_t budget = std::min(map_.size(), std::min(more() ? kTrimStep : over_by(), kTrimStep) + kTrimSlack);
    while ((map_.size() > capacity_ || more()) && budget-- > 0 && oldest_ != nullptr) {
      Node& last = *oldest_;
      if (idle(*last.key, last.value)) {
        unlink(last);
        map_.erase(map_.find(*last.key));
        ++dropped;
      } else {
        to_front(last);
      }
    }
    return dropped;
  }

 private:
  // The order of use is a list threaded through the hash nodes themselves
  // (no node of its own per entry: an idle user's entry is part of each
  // idle connection's cost, bench/ANALYSIS.md W1).
  struct Node {
    V value{};
    Node* newer = nullptr;
    Node* older = nullptr;
    const std::string* key = nullptr;  // the map's own key of this node
  };
  void link_front(Node& n) {
    n.newer = nullptr;
    n.older = newest_;
    if (newest_) newest_->newer = &n;
    newest_ = &n;
    if (!oldest_) oldest_ = &n;
  }
  void unlink(Node& n) {
    (n.newer ? n.newer->older : newest_) = n.older;
    (n.older ? n.older->newer : oldest_) = n.newer;
    n.newer = n.older = nullptr;
  }
  void to_front(Node& n) {
    if (newest_ == &n) return;
    unlink(n);
    link_front(n);
  }

  const std::size_t capacity_;
  std::unordered_map<std::string, Node> map_;
  Node* newest_ = nullptr;
  Node* oldest_ = nullptr;
};

}  // namespace im::core
