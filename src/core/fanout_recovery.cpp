#include "core/fanout_recovery.h"

#include <map>
#include <stdexcept>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <asio/post.hpp>

#include "core/fanout_chain.h"
#include "core/fanout_plan.h"
#include "core/shard.h"

namespace im::core {
namespace {

using ChainProgress = std::map<std::uint32_t, std::uint32_t>;  // chain -> rows done

// Posts the chains of one group record from where they stopped; returns the
// rows still to write.
std::size_t resume_group(CoreEnv& env, const store::FanoutEntry& e, const ChainProgress& done,
                         const std::shared_ptr<RecoveryTally>& tally) {
  const store::GroupFanoutRecord& record = e.group;
  std::size_t rows = 0;
  if (record.shard_count == 0) {  // written before progress rows existed
    for (const auto& uid : record.recipients) {
      tally->add();
      Shard& shard = env.shard_for(uid);
      asio::post(shard.context(),
                 [&shard, uid, msg = record.msg, tally] { shard.replay_checked_row(uid, msg, tally); });
    }
    return record.recipients.size();
  }
  auto msg = std::make_shared<const v1::Message>(record.msg);
  auto chains = fanout_chains(record.recipients, record.msg.from(), record.shard_count);
  for (std::uint32_t i = 0; i < chains.size(); ++i) {
    auto it = done.find(i);
    const std::size_t start = it == done.end() ? 0 : it->second;
    if (start >= chains[i].size()) continue;
    auto chain = std::make_shared<FanoutChain>();
    chain->msg = msg;
    chain->key = e.key;
    chain->index = i;
    chain->uids = std::move(chains[i]);
    chain->retry = false;
    chain->done = [tally](bool ok) { tally->finish(ok); };
    rows += chain->uids.size() - start;
    tally->add();
    Shard& first = env.shard_for(chain->uids[start]);
    asio::post(first.context(), [&first, chain, start] { first.append_group_slice(chain, start); });
  }
  return rows;
}

}  // namespace

void recover_fanouts(CoreEnv& env) {
  auto tally = std::make_shared<RecoveryTally>();
  auto finished = tally->all_done.get_future();
  std::vector<store::FanoutEntry> groups;
  std::map<std::pair<std::string, std::uint64_t>, ChainProgress> progress;
  std::size_t copies = 0;
  std::size_t unreadable = 0;
  auto scanned = env.store.scan_fanout([&](const store::FanoutEntry& e) {
    switch (e.kind) {
      case store::FanoutEntry::Kind::kCopy: {
        tally->add();
        ++copies;
        Shard& shard = env.shard_for(e.key.recipient);
        asio::post(shard.context(),
                   [&shard, key = e.key, record = e.copy, tally] { shard.append_copy(key, record, nullptr, tally); });
        break;
      }
      case store::FanoutEntry::Kind::kGroup: groups.push_back(e); break;
      case store::FanoutEntry::Kind::kProgress:
        progress[{e.key.conv, e.key.conv_seq}][e.progress.chain] = e.progress.done;
        break;
      case store::FanoutEntry::Kind::kUnreadable: ++unreadable; break;
    }
    return true;
  });
  if (!scanned) throw std::runtime_error("storage: cannot read pending fan-outs: " + scanned.error().message);
  if (unreadable > 0) spdlog::warn("start-up: {} unreadable fan-out rows left as they are", unreadable);
  std::size_t group_rows = 0;
  for (const auto& e : groups) group_rows += resume_group(env, e, progress[{e.key.conv, e.key.conv_seq}], tally);
  tally->finish(true);  // the scan's own count
  finished.wait();
  if (const std::size_t failed = tally->failed.load(); failed > 0)
    throw std::runtime_error(fmt::format(
        "storage: {} pending fan-outs could not be written; their records are kept for the next start", failed));
  if (groups.empty() && copies == 0) return;
  // Every chain is written: the group records go, with their progress rows.
  store::Batch done(env.store);
  for (const auto& e : groups) done.del_fanout(e.key);
  if (auto written = env.store.write(done); !written)
    throw std::runtime_error("storage: cannot finish pending fan-outs: " + written.error().message);
  spdlog::info("start-up: finished {} pending C2C copies and {} rows of {} group messages", copies, group_rows,
               groups.size());
}

}  // namespace im::core
