// TokenRevocations over a real store: the rule of the revoke's second, a
// revocation that never moves back, reloading after a reopen, and a failed
// write that leaves nothing revoked in memory.

#include <catch2/catch.hpp>

#include <filesystem>
#include <random>

#include "core/token_revocations.h"
#include "fault_env.h"
#include "store/store.h"

using namespace im;
using namespace im::core;

namespace {

class TempStore {
 public:
  TempStore() {
    config_.data_dir =
        (std::filesystem::temp_directory_path() / ("imrevoke-" + std::to_string(std::random_device{}()))).string();
    open();
  }
  ~TempStore() {
    faults.fail_writes(false);
    store_.reset();
    std::filesystem::remove_all(config_.data_dir);
  }
  void open() {
    store_.reset();
    auto opened = store::Store::open(config_, faults.env());
    REQUIRE(opened);
    store_ = std::move(opened.value());
  }
  store::Store& store() { return *store_; }

  test::FaultEnv faults;

 private:
  StorageConfig config_;
  std::unique_ptr<store::Store> store_;
};

}  // namespace

TEST_CASE("token revocations: tokens up to the revoke's second are refused, later ones are not") {
  TempStore db;
  TokenRevocations r;
  REQUIRE(r.load(db.store()));
  CHECK_FALSE(r.revoked("alice", 0));
  CHECK(r.issue_time("alice", 1000) == 1000);
  REQUIRE(r.revoke(db.store(), "alice", 1000));
  CHECK(r.revoked("alice", 0));  // no iat: issued at 0
  CHECK(r.revoked("alice", 999));
  CHECK(r.revoked("alice", 1000));  // the revoke's own second is refused
  CHECK_FALSE(r.revoked("alice", 1001));
  CHECK_FALSE(r.revoked("bob", 0));
  // A token minted in the revoke's second is dated after it, so it works.
  CHECK(r.issue_time("alice", 1000) == 1001);
  CHECK(r.issue_time("alice", 2000) == 2000);
  CHECK(r.issue_time("bob", 1000) == 1000);
  // A clock stepped back does not move a revocation back.
  REQUIRE(r.revoke(db.store(), "alice", 500));
  CHECK(r.revoked("alice", 1000));
  REQUIRE(r.revoke(db.store(), "alice", 3000));
  CHECK(r.revoked("alice", 3000));
  CHECK_FALSE(r.revoked("alice", 3001));
}

TEST_CASE("token revocations: durable across a reopen") {
  TempStore db;
  {
    TokenRevocations r;
    REQUIRE(r.load(db.store()));
    REQUIRE(r.revoke(db.store(), "alice", 1000));
    REQUIRE(r.revoke(db.store(), "a", 7));
    REQUIRE(r.revoke(db.store(), "alice.b@x-y_z", 2000));
    store::Batch other(db.store());  // other `meta` rows are not revocations
    other.put_meta("msg_id_reserved:0", 5);
    other.put_meta("token_revokes", 6);
    REQUIRE(db.store().write(other));
  }
  db.open();
  TokenRevocations r;
  REQUIRE(r.load(db.store()));
  CHECK(r.size() == 3);
  CHECK(r.revoked("alice", 1000));
  CHECK_FALSE(r.revoked("alice", 1001));
  CHECK(r.revoked("a", 7));
  CHECK_FALSE(r.revoked("a", 8));
  CHECK(r.revoked("alice.b@x-y_z", 2000));
  CHECK_FALSE(r.revoked("alic", 0));
}

TEST_CASE("token revocations: a failed write revokes nothing") {
  TempStore db;
  TokenRevocations r;
  REQUIRE(r.load(db.store()));
  db.faults.fail_writes(true);
  auto failed = r.revoke(db.store(), "alice", 1000);
  REQUIRE_FALSE(failed);
  CHECK(failed.error().code == StatusCode::kInternal);
  CHECK_FALSE(r.revoked("alice", 0));
}
