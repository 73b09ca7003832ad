#include "http/dev_admin_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <openssl/rand.h>

namespace im::http {
namespace {

constexpr std::size_t kKeyBytes = 32;

bool is_key(const std::string& s) {
  if (s.size() != 2 * kKeyBytes) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<std::string> read_key(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in) return make_error(StatusCode::kInternal, fmt::format("cannot read {}", path));
  std::string key = text.str();
  while (!key.empty() && (key.back() == '\n' || key.back() == '\r')) key.pop_back();
  if (!is_key(key)) return make_error(StatusCode::kInternal, fmt::format("{} does not hold a key of 64 hex digits", path));
  return key;
}

Result<std::string> make_key() {
  std::array<unsigned char, kKeyBytes> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1)
    return make_error(StatusCode::kInternal, "no random bytes for the admin key");
  std::string key;
  for (unsigned char b : raw) key += fmt::format("{:02x}", b);
  return key;
}

// A new file, never one that exists, readable by the owner only, and never
// seen half-written: the text goes to a temporary file, synced, which is then
// linked to `path` (link() fails when `path` exists; a crash leaves at worst
// the temporary file).
Result<Ok> write_new(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // one a crash left
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, S_IRUSR | S_IWUSR);
  if (fd < 0) return make_error(StatusCode::kInternal, fmt::format("cannot create {}: {}", tmp, std::strerror(errno)));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (ok && ::link(tmp.c_str(), path.c_str()) != 0) {
    ok = false;
    saved = errno;
  }
  ::unlink(tmp.c_str());
  if (!ok) return make_error(StatusCode::kInternal, fmt::format("cannot write {}: {}", path, std::strerror(saved)));
  return Ok{};
}

}  // namespace

Result<DevAdminKey> load_or_create_dev_admin_key(const std::string& data_dir) {
  DevAdminKey out;
  out.path = (std::filesystem::path(data_dir) / kDevAdminKeyFile).string();
  std::error_code ec;
  if (std::filesystem::exists(out.path, ec)) {
    auto key = read_key(out.path);
    if (!key) return key.error();
    out.key = std::move(*key);
    return out;
  }
  auto key = make_key();
  if (!key) return key.error();
  if (auto w = write_new(out.path, *key + "\n"); !w) return w.error();
  out.key = std::move(*key);
  out.created = true;
  return out;
}

}  // namespace im::http
