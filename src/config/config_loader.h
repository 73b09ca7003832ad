#pragma once
// TOML file + IMSERVER_<SECTION>__<KEY> environment -> a validated Config.
// Every key has a default; an unknown key, a wrong type or a bad value is an
// error naming the key ("server.max_frame_bytes: must be between ...").

#include <map>
#include <string>

#include "im/config.h"
#include "im/result.h"

namespace im {

// `path` empty: defaults plus the environment. `env` maps variable names to
// values (the caller passes the process environment; tests pass their own).
Result<Config> load_config(const std::string& path, const std::map<std::string, std::string>& env);

// Only the checks on an already-built Config (also run by load_config).
Result<Ok> validate_config(const Config& config);

// The process environment, for load_config.
std::map<std::string, std::string> process_environment();

// "host:port" or "[v6]:port" split into its parts.
struct HostPort {
  std::string host;
  std::uint16_t port = 0;
};
Result<HostPort> parse_host_port(const std::string& text);
bool is_loopback_host(const std::string& host);

}  // namespace im
