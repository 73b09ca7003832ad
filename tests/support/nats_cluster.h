#pragma once
// A NATS JetStream cluster on loopback for a test, started and stopped by
// scripts/nats-cluster.sh in a fresh temporary directory (its nodes' configs,
// stores and logs). The destructor stops the nodes it started, by PID.

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "cluster/jetstream.h"

namespace im::test {

class NatsCluster {
 public:
  explicit NatsCluster(int nodes = 3);
  ~NatsCluster();
  NatsCluster(const NatsCluster&) = delete;
  NatsCluster& operator=(const NatsCluster&) = delete;

  const std::vector<std::string>& urls() const { return urls_; }
  std::string urls_csv() const;
  int nodes() const { return nodes_; }
  // A JetStream client of this cluster (fails the test when it cannot connect).
  std::unique_ptr<cluster::JetStream> connect() const;
  const std::string& dir() const { return dir_; }
  // Node i (1-based): its PID, kill -9, start again on its ports and store.
  pid_t pid(int node) const;
  void kill9(int node);
  void restart(int node);
  void restart_all();  // every node not running (one alone would wait for the others)
  // The node that leads `stream` now (1-based), or 0 when none is known.
  int leader_of(const std::string& stream) const;

 private:
  std::string dir_;
  int nodes_;
  std::vector<std::string> urls_;
};

}  // namespace im::test
