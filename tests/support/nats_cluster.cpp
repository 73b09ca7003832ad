#include "nats_cluster.h"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <catch2/catch.hpp>

#include "server_process.h"

namespace im::test {
namespace {

std::string script() {
  return std::string(IM_SOURCE_DIR) + "/scripts/nats-cluster.sh";
}

// Runs a command; its standard output, or a test failure.
std::string run(const std::string& command) {
  std::string out;
  FILE* p = ::popen(command.c_str(), "r");
  if (!p) FAIL("popen failed: " << command);
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
  const int status = ::pclose(p);
  if (status != 0) FAIL(command << " failed (" << status << "): " << out);
  return out;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

NatsCluster::NatsCluster(int nodes) : dir_(unique_temp_path("imnats")), nodes_(nodes) {
  const std::string csv = run(script() + " start " + dir_ + " " + std::to_string(nodes) + " 2>&1");
  std::stringstream in(csv.substr(0, csv.find('\n')));
  for (std::string url; std::getline(in, url, ',');) urls_.push_back(url);
  REQUIRE(static_cast<int>(urls_.size()) == nodes);
}

NatsCluster::~NatsCluster() {
  std::system((script() + " stop " + dir_ + " >/dev/null 2>&1").c_str());
  std::error_code ec;
  std::filesystem::remove_all(dir_, ec);
}

std::string NatsCluster::urls_csv() const {
  std::string out;
  for (const auto& u : urls_) out += (out.empty() ? "" : ",") + u;
  return out;
}

std::unique_ptr<cluster::JetStream> NatsCluster::connect() const {
  cluster::JetStream::Options o;
  o.urls = urls_;
  auto js = cluster::JetStream::connect(o);
  REQUIRE(js.ok());
  return std::move(js.value());
}

pid_t NatsCluster::pid(int node) const {
  return static_cast<pid_t>(std::stol(read_file(dir_ + "/n" + std::to_string(node) + "/pid")));
}

void NatsCluster::kill9(int node) {
  run(script() + " kill " + dir_ + " " + std::to_string(node) + " 2>&1");
}

void NatsCluster::restart(int node) {
  run(script() + " restart " + dir_ + " " + std::to_string(node) + " 2>&1");
}

void NatsCluster::restart_all() {
  run(script() + " restart " + dir_ + " all 2>&1");
}

int NatsCluster::leader_of(const std::string& stream) const {
  for (int i = 1; i <= nodes_; ++i) {
    const std::string port = read_file(dir_ + "/n" + std::to_string(i) + "/http_port");
    std::string out;
    if (FILE* p = ::popen(
            ("curl -fsS 'http://127.0.0.1:" + port.substr(0, port.find('\n')) + "/jsz?streams=true' 2>/dev/null")
                .c_str(),
            "r")) {
      char buf[4096];
      for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) out.append(buf, n);
      ::pclose(p);
    }
    // The node that leads the stream lists it with itself as the leader.
    const auto at = out.find("\"name\": \"" + stream + "\"");
    if (at == std::string::npos) continue;
    const auto leader = out.find("\"leader\": \"", at);
    if (leader == std::string::npos) continue;
    const auto name = out.substr(leader + 11, out.find('"', leader + 11) - leader - 11);
    if (name.size() > 1 && name[0] == 'n') return std::atoi(name.c_str() + 1);
  }
  return 0;
}

}  // namespace im::test
