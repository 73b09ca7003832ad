#pragma once
// The token revocations of PROTOCOL 6 (POST /v1/users/{uid}/kick with
// "revoke": true): per uid, the second up to which every token of that uid
// is refused, by its `iat` (a token without `iat` counts as issued at 0).
// One row per revoked user in `meta` (store: put_token_revocation), all read
// at start-up and kept in memory, so LOGIN never reads the disk for them;
// memory grows with the number of users ever revoked (tens of bytes each).
//
// The second of a revoke is ambiguous (a token minted in it may be older or
// newer than the kick), so it is refused: a kicked client never gets back in
// with the token it held. issue_time() dates tokens that /v1/tokens mints
// after the revoke one second later, so they work.
//
// Thread safe. A revoke and the LOGINs it must refuse are ordered by the
// user's shard: LOGIN is checked there (login_in_shard), and the kick that
// follows a revoke is posted there after the revocation is in memory, so a
// LOGIN either sees it or was registered before the kick and is kicked.

#include <cstdint>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>

#include "im/result.h"

namespace im::store {
class Store;
}

namespace im::cluster {
class PartitionLog;
}

namespace im::core {

class TokenRevocations {
 public:
  // Reads every revocation in the store (start-up, before any LOGIN).
  Result<Ok> load(store::Store& store);
  // From now on refuses every token of `uid` issued at or before `now_s`:
  // durable in the store first, then in memory. Never moves back (a clock
  // stepped back keeps the later revocation). Blocks on the write.
  // `log`: in cluster mode the uid's partition log, and the call runs on
  // that partition's shard (null: embedded mode, any thread).
  Result<Ok> revoke(store::Store& store, const std::string& uid, std::int64_t now_s,
                    cluster::PartitionLog* log = nullptr);
  // Whether a token of `uid` issued at `iat_s` is refused.
  bool revoked(const std::string& uid, std::int64_t iat_s) const;
  // The `iat` of a token minted for `uid` at `now_s`: `now_s`, or the
  // second after the user's last revocation when that is later.
  std::int64_t issue_time(const std::string& uid, std::int64_t now_s) const;
  std::size_t size() const;

 private:
  std::mutex write_mutex_;           // one revoke at a time: the store and memory agree
  mutable std::shared_mutex mutex_;  // guards revoked_s_
  std::unordered_map<std::string, std::int64_t> revoked_s_;
};

}  // namespace im::core
