// The config loader (src/config/config_loader.h): TOML text, and
// IMSERVER_<SECTION>__<KEY> variables, to a validated Config.
//
// Input: the TOML file's text, then optionally a NUL byte and environment
// lines "NAME=VALUE" separated by '\n'. The loader must answer a Config that
// validates, or an error naming what is wrong; never throw or crash.
//
// Inputs that name device or kernel files (/dev, /proc, /sys) or hide a path
// in an escape are skipped: the loader reads auth.jwt_secret_file and opens
// tls.cert_file, and an operator who points them at /dev/zero or a FIFO
// gets what they asked for (a config file is trusted).

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <string>

#include "config/config_loader.h"
#include "fuzz.h"

namespace {

// Where each input is written; removed at exit. Never destroyed, so the
// exit handler can still read it.
const std::string& toml_path() {
  static const std::string* const path = [] {
    const char* base = std::getenv("TMPDIR");
    std::string dir = std::string(base && *base ? base : "/tmp") + "/imfuzz-config-XXXXXX";
    if (!mkdtemp(dir.data())) std::abort();
    auto* p = new std::string(dir + "/im.toml");
    std::atexit([] {
      std::remove(toml_path().c_str());
      ::rmdir(toml_path().substr(0, toml_path().rfind('/')).c_str());
    });
    return p;
  }();
  return *path;
}

bool names_special_files(std::string_view s) {
  for (std::string_view bad : {"/dev", "/proc", "/sys", "\\u", "\\U", "\\x", "\\X"})
    if (s.find(bad) != std::string_view::npos) return true;
  return false;
}

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  const std::string_view all(reinterpret_cast<const char*>(data), size);
  if (names_special_files(all)) return 0;
  im::fuzz::Reader in(data, size);
  const std::string_view toml = in.until('\0');
  std::map<std::string, std::string> env;
  while (!in.empty()) {
    const std::string_view line = in.until('\n');
    const std::size_t eq = line.find('=');
    if (eq != std::string_view::npos) env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
  }
  {
    std::ofstream out(toml_path(), std::ios::binary | std::ios::trunc);
    out.write(toml.data(), static_cast<std::streamsize>(toml.size()));
    FUZZ_CHECK(out.good());
  }
  auto config = im::load_config(toml_path(), env);
  if (config) {
    FUZZ_CHECK(im::validate_config(*config));
  } else {
    FUZZ_CHECK(config.error().code == im::StatusCode::kBadRequest);
    FUZZ_CHECK(!config.error().message.empty());
  }
  return 0;
}
