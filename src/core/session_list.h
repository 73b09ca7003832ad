#pragma once
// A user's live sessions on its shard, at most one per device type.

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace im::net {
class Connection;
}

namespace im::core {

// Session ids have 56 bits (random, never 0: SessionList's mark of no
// session), so that a SessionRef and a device cursor keep one in a word
// with their flags.
inline constexpr unsigned kSessionIdBits = 56;

// The device's id is not kept here: the device's cursor has it, and the id
// of the session that last logged in on it (Shard::DeviceCursor).
struct SessionRef {
  std::weak_ptr<net::Connection> conn;
  // The device type shares the id's word: a user's entry stays in a
  // 160-byte chunk (bench/ANALYSIS.md, W1).
  std::uint64_t session_id : kSessionIdBits = 0;
  std::uint64_t device_type : 8 = 0;
};
static_assert(sizeof(void*) != 8 || sizeof(SessionRef) == 24);

// Most users have one session: it is kept inline, and a second one moves
// them all to a vector of their own. A vector for one session cost its own
// 80-byte chunk per idle connection (bench/ANALYSIS.md, W1). Iterates like
// a contiguous range; erasing or adding may move the entries, so no
// pointer to one is kept across either.
class SessionList {
 public:
  SessionList() = default;
  SessionList(SessionList&& other) noexcept { *this = std::move(other); }
  SessionList& operator=(SessionList&& other) noexcept {
    if (this != &other) {
      one_ = std::exchange(other.one_, SessionRef{});
      more_ = std::move(other.more_);
    }
    return *this;
  }

  SessionRef* begin() { return more_ ? more_->data() : &one_; }
  SessionRef* end() { return begin() + size(); }
  const SessionRef* begin() const { return more_ ? more_->data() : &one_; }
  const SessionRef* end() const { return begin() + size(); }
  std::size_t size() const { return more_ ? more_->size() : (one_.session_id != 0 ? 1 : 0); }
  bool empty() const { return size() == 0; }

  // `s.session_id` must not be 0.
  void push_back(SessionRef s) {
    if (more_) {
      more_->push_back(std::move(s));
    } else if (one_.session_id == 0) {
      one_ = std::move(s);
    } else {
      more_ = std::make_unique<std::vector<SessionRef>>();
      more_->reserve(2);
      more_->push_back(std::exchange(one_, SessionRef{}));
      more_->push_back(std::move(s));
    }
  }
  // Keeps the order of the others. Back to inline when one is left.
  void erase(SessionRef* it) {
    if (!more_) {
      one_ = SessionRef{};
      return;
    }
    more_->erase(more_->begin() + (it - more_->data()));
    if (more_->size() == 1) {
      one_ = std::move(more_->front());
      more_.reset();
    }
  }
  // Moves every session out; the list is empty after.
  std::vector<SessionRef> take() {
    std::vector<SessionRef> out;
    if (more_) {
      out = std::move(*more_);
      more_.reset();
    } else if (one_.session_id != 0) {
      out.push_back(std::exchange(one_, SessionRef{}));
    }
    return out;
  }

 private:
  SessionRef one_;  // the only session (session_id 0: none) while more_ is null
  std::unique_ptr<std::vector<SessionRef>> more_;
};

}  // namespace im::core
