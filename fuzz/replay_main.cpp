// Replays the seed corpus and every kept regression of one harness through
// its fuzz_one(), in any build (no libFuzzer needed): each file once, in name
// order. A crash, a sanitizer report or a failed FUZZ_CHECK fails the test.
// IM_FUZZ_REPLAY_DIRS lists the folders, separated by ':'.

#include <catch2/catch.hpp>  // Catch's main: tests/support/catch_main.cpp

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz.h"

TEST_CASE("every corpus and regression file runs through fuzz_one") {
  namespace fs = std::filesystem;
  std::vector<fs::path> files;
  const std::string dirs = IM_FUZZ_REPLAY_DIRS;
  std::size_t start = 0;
  std::size_t dirs_found = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const fs::path dir = dirs.substr(start, end - start);
    start = end + 1;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) continue;
    ++dirs_found;
    for (const auto& entry : fs::directory_iterator(dir))
      if (entry.is_regular_file() && entry.path().filename().string().front() != '.') files.push_back(entry.path());
  }
  REQUIRE(dirs_found > 0);
  REQUIRE(!files.empty());  // the seed corpus at least
  std::sort(files.begin(), files.end());
  for (const auto& path : files) {
    std::ifstream in(path, std::ios::binary);
    REQUIRE(in.good());
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    INFO(path.string());
    // An abort ends the process before Catch can report: name the file first.
    std::fprintf(stderr, "fuzz replay: %s\n", path.c_str());
    CHECK(fuzz_one(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()) == 0);
  }
}
