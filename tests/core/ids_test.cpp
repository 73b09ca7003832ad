#include <catch2/catch.hpp>
#include <string>

#include "core/ids.h"

using im::core::valid_client_id;
using im::core::valid_id;

TEST_CASE("uids and gids: 1 to 64 bytes of A-Z a-z 0-9 . _ @ -") {
  CHECK(valid_id("alice"));
  CHECK(valid_id("A.b_c@d-9"));
  CHECK(valid_id(std::string(64, 'x')));
  CHECK_FALSE(valid_id(""));
  CHECK_FALSE(valid_id(std::string(65, 'x')));
  CHECK_FALSE(valid_id("a b"));
  CHECK_FALSE(valid_id("a/b"));
  CHECK_FALSE(valid_id("a:b"));
  CHECK_FALSE(valid_id("\xC3\xA9"));
  CHECK_FALSE(valid_id(std::string("a\0b", 3)));
}

TEST_CASE("client ids: 1 to 64 bytes of printable ASCII") {
  CHECK(valid_client_id("msg 1: {ok}"));
  CHECK(valid_client_id(std::string(64, '~')));
  CHECK_FALSE(valid_client_id(""));
  CHECK_FALSE(valid_client_id(std::string(65, 'a')));
  CHECK_FALSE(valid_client_id("tab\there"));
  CHECK_FALSE(valid_client_id("\x7F"));
}
