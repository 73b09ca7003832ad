#include <catch2/catch.hpp>

#include "net/admission_control.h"

using im::net::AdmissionControl;

TEST_CASE("admission refuses over the connection cap until one closes") {
  AdmissionControl a(2, 1000, 0);
  CHECK_FALSE(a.try_admit(1));
  CHECK_FALSE(a.try_admit(2));
  auto refused = a.try_admit(3);
  REQUIRE(refused);
  CHECK(*refused > 0);
  a.release(1);
  CHECK_FALSE(a.try_admit(3));
  CHECK(a.open() == 2);
}

TEST_CASE("admission limits the accept rate with a retry hint") {
  AdmissionControl a(1000, 5, 0);
  int admitted = 0;
  std::uint32_t retry = 0;
  for (int i = 0; i < 20; ++i) {
    auto r = a.try_admit(static_cast<std::uint64_t>(i));
    if (!r)
      ++admitted;
    else
      retry = *r;
  }
  CHECK(admitted <= 6);
  CHECK(admitted >= 5);
  CHECK(retry >= 100);
}

TEST_CASE("admission caps connections per peer") {
  AdmissionControl a(1000, 1000, 2);
  CHECK_FALSE(a.try_admit(7));
  CHECK_FALSE(a.try_admit(7));
  CHECK(a.try_admit(7));
  CHECK_FALSE(a.try_admit(8));
  a.release(7);
  CHECK_FALSE(a.try_admit(7));
}

TEST_CASE("peer keys: IPv4 exact, v4-mapped IPv6 as IPv4, IPv6 by /64") {
  using asio::ip::make_address;
  CHECK(AdmissionControl::peer_key(make_address("10.1.2.3")) ==
        AdmissionControl::peer_key(make_address("::ffff:10.1.2.3")));
  CHECK(AdmissionControl::peer_key(make_address("10.1.2.3")) != AdmissionControl::peer_key(make_address("10.1.2.4")));
  CHECK(AdmissionControl::peer_key(make_address("2001:db8:1:2::1")) ==
        AdmissionControl::peer_key(make_address("2001:db8:1:2::ffff")));
  CHECK(AdmissionControl::peer_key(make_address("2001:db8:1:2::1")) !=
        AdmissionControl::peer_key(make_address("2001:db8:1:3::1")));
}
