// core/fanout_plan: how a group message's recipients are split into
// per-shard chains, and how a chain is cut into slices.

#include <catch2/catch.hpp>
#include <cstddef>
#include <limits>
#include <string>
#include <vector>

#include "core/fanout_plan.h"

using im::core::fanout_chains;
using im::core::kSliceRows;
using im::core::shard_of;
using im::core::slice_end;

namespace {

using Uids = std::vector<std::string>;

Uids numbered(std::size_t n, const std::string& prefix = "user") {
  Uids out;
  for (std::size_t i = 0; i < n; ++i) out.push_back(prefix + std::to_string(i));
  return out;
}

// `count` uids that shard `shard` of `shard_count` owns.
Uids owned_by(std::size_t shard, std::size_t shard_count, std::size_t count, const std::string& prefix = "m") {
  Uids out;
  for (std::size_t i = 0; out.size() < count; ++i) {
    std::string uid = prefix + std::to_string(i);
    if (shard_of(uid, shard_count) == shard) out.push_back(std::move(uid));
  }
  return out;
}

// `chain` without `uid`, in the same order.
Uids without(const Uids& chain, const std::string& uid) {
  Uids out;
  for (const auto& u : chain)
    if (u != uid) out.push_back(u);
  return out;
}

// The recipients of `all` that shard `shard` of `shard_count` owns, in order.
Uids filter_shard(const Uids& all, std::size_t shard, std::size_t shard_count) {
  Uids out;
  for (const auto& u : all)
    if (shard_of(u, shard_count) == shard) out.push_back(u);
  return out;
}

}  // namespace

// ---------------------------------------------------------------- shard_of

TEST_CASE("shard_of: pinned values (FNV-1a 64 of the key)") {
  // Changing this hash re-homes every user, conversation and group: the
  // fan-out records and progress rows written before name chains by the old
  // shards, so start-up recovery of them would break. Never change these.
  CHECK(shard_of("alice", std::numeric_limits<std::size_t>::max()) == 0x508b2abb65a03907ull);
  CHECK(shard_of("alice", 16) == 7);
  CHECK(shard_of("bob", 16) == 4);
  CHECK(shard_of("g:team", 16) == 5);
  CHECK(shard_of("c:alice:bob", 7) == 5);
  CHECK(shard_of("", 4) == 1);
}

TEST_CASE("shard_of: always below the shard count, one shard owns everything") {
  for (const auto& uid : numbered(200)) {
    CHECK(shard_of(uid, 5) < 5);
    CHECK(shard_of(uid, 1) == 0);
  }
}

// ---------------------------------------------------------------- fanout_chains

TEST_CASE("chains: one chain per shard, each recipient in exactly one, the one its shard owns") {
  const Uids recipients = numbered(100);
  const auto chains = fanout_chains(recipients, "user7", 4);
  REQUIRE(chains.size() == 4);
  std::size_t total = 0;
  for (std::size_t i = 0; i < chains.size(); ++i) {
    total += chains[i].size();
    for (const auto& uid : chains[i]) CHECK(shard_of(uid, 4) == i);
  }
  CHECK(total == recipients.size());
}

TEST_CASE("chains: the sender comes first in its chain, the others keep the record's order") {
  const Uids recipients = numbered(100);
  const std::string sender = "user42";
  const std::size_t home = shard_of(sender, 4);
  const auto chains = fanout_chains(recipients, sender, 4);
  REQUIRE(!chains[home].empty());
  CHECK(chains[home].front() == sender);
  CHECK(without(chains[home], sender) == without(filter_shard(recipients, home, 4), sender));
  for (std::size_t i = 0; i < chains.size(); ++i)
    if (i != home) CHECK(chains[i] == filter_shard(recipients, i, 4));
}

TEST_CASE("chains: a sender who is not a recipient adds nobody") {
  const Uids recipients = numbered(30);
  const auto chains = fanout_chains(recipients, "admin-actor", 3);
  for (std::size_t i = 0; i < chains.size(); ++i) CHECK(chains[i] == filter_shard(recipients, i, 3));
}

TEST_CASE("chains: with one shard there is one chain: the sender, then the record's order") {
  const Uids recipients{"carol", "alice", "dave", "bob"};
  const auto chains = fanout_chains(recipients, "dave", 1);
  REQUIRE(chains.size() == 1);
  CHECK(chains[0] == Uids{"dave", "carol", "alice", "bob"});
}

TEST_CASE("chains: no recipients make empty chains") {
  const auto chains = fanout_chains({}, "alice", 3);
  REQUIRE(chains.size() == 3);
  for (const auto& c : chains) CHECK(c.empty());
}

// ---------------------------------------------------------------- slice_end

TEST_CASE("slices: a chain of one shard is cut every kSliceRows rows") {
  const Uids chain = owned_by(2, 4, 600);
  CHECK(slice_end(chain, 0, 4) == kSliceRows);
  CHECK(slice_end(chain, kSliceRows, 4) == 2 * kSliceRows);
  CHECK(slice_end(chain, 2 * kSliceRows, 4) == 600);
}

TEST_CASE("slices: a slice never passes the end of the chain") {
  const Uids chain = owned_by(0, 2, 10);
  CHECK(slice_end(chain, 0, 2) == 10);
  CHECK(slice_end(chain, 9, 2) == 10);
  CHECK(slice_end(chain, 10, 2) == 10);  // nothing left
  CHECK(slice_end({}, 0, 2) == 0);
}

TEST_CASE("slices: a slice is at least one row when any remain") {
  const Uids chain = numbered(50);
  for (std::size_t offset = 0; offset < chain.size(); ++offset) CHECK(slice_end(chain, offset, 8) > offset);
}

TEST_CASE("slices: with another shard count than the chain was built with, a slice stops where the owner changes") {
  // Built with one shard (one chain); cut with four shards, as at a start-up
  // with more shards than the run that wrote the record.
  const Uids a = owned_by(0, 4, 4, "a");
  const Uids b = owned_by(1, 4, 2, "b");
  const Uids recipients{a[0], a[1], a[2], b[0], b[1], a[3]};
  const auto chains = fanout_chains(recipients, "nobody", 1);
  REQUIRE(chains.size() == 1);
  const Uids& chain = chains[0];
  REQUIRE(chain == recipients);
  CHECK(slice_end(chain, 0, 4) == 3);
  CHECK(slice_end(chain, 1, 4) == 3);
  CHECK(slice_end(chain, 3, 4) == 5);
  CHECK(slice_end(chain, 5, 4) == 6);
}

TEST_CASE("slices: every row of a slice is owned by the shard that owns its first row") {
  const Uids chain = numbered(1000);
  for (std::size_t offset = 0; offset < chain.size();) {
    const std::size_t end = slice_end(chain, offset, 3);
    REQUIRE(end > offset);
    REQUIRE(end - offset <= kSliceRows);
    for (std::size_t i = offset; i < end; ++i) CHECK(shard_of(chain[i], 3) == shard_of(chain[offset], 3));
    offset = end;
  }
}
