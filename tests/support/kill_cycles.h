#pragma once
// The crash test's cycle (durability_test.cpp, and cluster mode's), shared.

#include <algorithm>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "messaging.h"
#include "server_process.h"

namespace im::test {

// The crash test's cycle, one step a method: senders pipeline SENDs, the
// server is killed in the middle, restarted, whatever was not answered is
// retried, and every inbox and history is checked. Keeps every SEND made.
class KillCycles {
 public:
  explicit KillCycles(ServerProcess& server) : server_(server) {}

  // Every sender logs in and writes kPerSender SENDs to random users in one
  // go, without waiting for answers.
  void pipelined_senders_run() {
    clients_.clear();
    cmids_.assign(kSenders.size(), {});
    for (std::size_t s = 0; s < kSenders.size(); ++s) {
      clients_.push_back(server_.login(kSenders[s]));
      std::string bytes;
      for (int i = 0; i < kPerSender; ++i) {
        std::string to = kEveryone[rng_() % kEveryone.size()];
        std::string cmid = "c" + std::to_string(++next_id_);
        sent_[cmid] = Sent{kSenders[s], to, cmid, false, {}};
        cmids_[s].push_back(cmid);
        FrameHeader h;
        h.cmd = Cmd::kSend;
        h.seq = static_cast<std::uint32_t>(i + 1);
        bytes += encode_frame(h, send_req(to, cmid, "body of " + cmid).SerializeAsString());
      }
      clients_[s]->send_raw(bytes);
    }
  }

  // SIGKILL somewhere in the middle of the stream; the SENDs answered before
  // it are acknowledged. The random delay is the test's design, not a wait
  // for anything: it moves the kill around so that over the cycles it lands
  // before, among and after the writes and answers.
  void server_killed() {
    std::this_thread::sleep_for(std::chrono::microseconds(rng_() % 15000));
    server_.kill9();
    for (std::size_t s = 0; s < kSenders.size(); ++s) {
      for (int i = 0; i < kPerSender; ++i) {
        auto f = clients_[s]->next_frame(std::chrono::milliseconds(200));
        if (!f) break;
        if (f->header.cmd != Cmd::kSend || !f->ok()) continue;
        Sent& m = sent_[cmids_[s][f->header.seq - 1]];
        REQUIRE(m.resp.ParseFromString(f->body));
        m.acked = true;
        ++answered_before_kill_;
      }
    }
    clients_.clear();
  }

  // Restart, and retry everything unanswered with the same client_msg_id:
  // stored ones come back as duplicates with their ids, the others are sent
  // now.
  // With `wipe_data_dir` the server comes back with an empty data dir
  // (cluster mode rebuilds it from the log, docs/cluster.md).
  void restart_and_retry_unanswered(bool wipe_data_dir = false) {
    if (wipe_data_dir) {
      std::error_code ec;
      std::filesystem::remove_all(server_.data_dir(), ec);
      REQUIRE_FALSE(ec);
    }
    server_.restart();
    std::map<std::string, std::unique_ptr<SyncClient>> by_sender;
    for (auto& [cmid, m] : sent_) {
      if (m.acked) continue;
      auto& c = by_sender[m.from];
      if (!c) c = server_.login(m.from);
      m.resp = send_ok(*c, m.to, cmid, "body of " + cmid);
      m.acked = true;
      ++retried_;
      retried_duplicate_ += m.resp.duplicate() ? 1 : 0;
    }
  }

  // Every inbox gapless, each message in it once (by msg_id and by
  // client_msg_id: a retry stored again would have a new msg_id) and one
  // that was sent; every acknowledged message in the inboxes of both ends,
  // the sender's at the seq SendResp said; every conversation's history
  // gapless, each message once, every acknowledged one at the conv_seq
  // SendResp said.
  void every_acknowledged_message_present_exactly_once_and_gapless(int cycle) {
    INFO("cycle " << cycle);
    std::map<std::string, std::vector<v1::Message>> inbox;
    for (const auto& uid : kEveryone) {
      auto c = server_.login(uid, v1::DESKTOP, "verifier");
      inbox[uid] = pull_all(*c);
      once_each(inbox[uid], [](const v1::Message& m) { return m.inbox_seq(); });
    }
    std::map<std::string, std::set<std::uint64_t>> in;
    for (const auto& [uid, rows] : inbox)
      for (const auto& m : rows) in[uid].insert(m.msg_id());
    for (const auto& [cmid, s] : sent_) {
      if (!s.acked) continue;
      REQUIRE(in[s.from].count(s.resp.msg_id()) == 1);
      REQUIRE(in[s.to].count(s.resp.msg_id()) == 1);
      const auto& rows = inbox[s.from];
      REQUIRE(s.resp.inbox_seq() >= 1);
      REQUIRE(s.resp.inbox_seq() <= rows.size());
      REQUIRE(rows[s.resp.inbox_seq() - 1].msg_id() == s.resp.msg_id());  // the seq SendResp said
    }
    // Every conversation, each read by its smaller uid.
    std::map<std::pair<std::string, std::string>, std::vector<v1::Message>> history;
    std::map<std::string, std::unique_ptr<SyncClient>> viewers;
    for (const auto& a : kEveryone) {
      for (const auto& b : kEveryone) {
        if (b < a) continue;
        auto& viewer = viewers[a];
        if (!viewer) viewer = server_.login(a, v1::WEB, "verifier");
        auto& h = history[{a, b}];
        h = history_all(*viewer, v1::C2C, b);
        once_each(h, [](const v1::Message& m) { return m.conv_seq(); });
      }
    }
    for (const auto& [cmid, s] : sent_) {
      if (!s.acked) continue;
      const auto& h = history[std::minmax(s.from, s.to)];
      REQUIRE(s.resp.conv_seq() >= 1);
      REQUIRE(s.resp.conv_seq() <= h.size());
      REQUIRE(h[s.resp.conv_seq() - 1].msg_id() == s.resp.msg_id());  // the conv_seq SendResp said
    }
  }

  int answered_before_kill() const { return answered_before_kill_; }
  int retried() const { return retried_; }
  int retried_duplicate() const { return retried_duplicate_; }

 private:
  // Rows numbered 1, 2, ... by `seq_of` (gapless), each msg_id and each
  // client_msg_id once, each client_msg_id one that was sent.
  template <class SeqOf>
  void once_each(const std::vector<v1::Message>& rows, SeqOf seq_of) const {
    std::set<std::uint64_t> ids;
    std::set<std::string> cmids;
    for (std::size_t i = 0; i < rows.size(); ++i) {
      REQUIRE(seq_of(rows[i]) == i + 1);
      REQUIRE(ids.insert(rows[i].msg_id()).second);
      REQUIRE(cmids.insert(rows[i].client_msg_id()).second);
      REQUIRE(sent_.count(rows[i].client_msg_id()));
    }
  }

  struct Sent {
    std::string from, to, cmid;
    bool acked = false;
    v1::SendResp resp;
  };
  static constexpr int kPerSender = 400;
  inline static const std::vector<std::string> kSenders = {"s0", "s1", "s2", "s3"};
  inline static const std::vector<std::string> kEveryone = {"s0", "s1", "s2", "s3", "r0", "r1"};

  ServerProcess& server_;
  std::map<std::string, Sent> sent_;  // by client_msg_id
  std::mt19937 rng_{2024};
  std::uint32_t next_id_ = 0;
  // This cycle's senders, and the client_msg_ids each sent, by frame seq - 1.
  std::vector<std::unique_ptr<SyncClient>> clients_;
  std::vector<std::vector<std::string>> cmids_;
  int answered_before_kill_ = 0;
  int retried_ = 0;
  int retried_duplicate_ = 0;
};

}  // namespace im::test
