#pragma once
// What every harness shares. A harness is fuzz_one(): it runs one input
// through the code under test and checks what must hold whatever the input;
// a failed check aborts (so libFuzzer and the replay test both see it).
// Bad input must give a clear error, never a crash, a hang or UB.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

// The harness of this binary (one per fuzz/<name>.cpp).
int fuzz_one(const std::uint8_t* data, std::size_t size);

#define FUZZ_CHECK(cond)                                                                        \
  do {                                                                                          \
    if (!(cond)) {                                                                              \
      std::fprintf(stderr, "fuzz check failed at %s:%d: %s\n", __FILE__, __LINE__, #cond);     \
      std::abort();                                                                             \
    }                                                                                           \
  } while (0)

namespace im::fuzz {

// Takes the input apart front to back; past its end every read gives 0 or "".
class Reader {
 public:
  Reader(const std::uint8_t* data, std::size_t size) : p_(reinterpret_cast<const char*>(data)), n_(size) {}

  bool empty() const { return n_ == 0; }
  std::size_t left() const { return n_; }
  std::uint8_t byte() {
    if (n_ == 0) return 0;
    --n_;
    return static_cast<std::uint8_t>(*p_++);
  }
  std::uint16_t u16() { return static_cast<std::uint16_t>((byte() << 8) | byte()); }
  std::uint32_t u32() { return (std::uint32_t{u16()} << 16) | u16(); }
  std::string_view bytes(std::size_t n) {
    if (n > n_) n = n_;
    std::string_view out(p_, n);
    p_ += n;
    n_ -= n;
    return out;
  }
  // Up to the next `sep` (dropped) or the end.
  std::string_view until(char sep) {
    const std::string_view rest(p_, n_);
    const std::size_t at = rest.find(sep);
    if (at == std::string_view::npos) return bytes(n_);
    std::string_view out = bytes(at);
    byte();
    return out;
  }
  std::string_view rest() { return bytes(n_); }

 private:
  const char* p_;
  std::size_t n_;
};

}  // namespace im::fuzz
