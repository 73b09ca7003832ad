// libFuzzer's entry: the harness of this binary (scripts/fuzz.sh).

#include "fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return fuzz_one(data, size);
}
