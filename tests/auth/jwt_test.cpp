#include <catch2/catch.hpp>
#include <string>

#include "auth/jwt.h"

using namespace im;

namespace {
const std::string kSecret = "0123456789abcdef0123456789abcdef";
constexpr std::int64_t kNow = 1'800'000'000;

std::string sign(const std::string& header_json, const std::string& payload_json, const std::string& secret = kSecret) {
  std::string input = base64url_encode(header_json) + "." + base64url_encode(payload_json);
  return input + "." + base64url_encode(hmac_sha256(secret, input));
}

std::string reason(const Result<JwtClaims>& r) {
  REQUIRE_FALSE(r);
  CHECK(r.error().code == StatusCode::kUnauthenticated);
  return r.error().message;
}
}  // namespace

TEST_CASE("a minted token verifies for its uid") {
  JwtVerifier v(kSecret);
  auto r = v.verify(mint_jwt(kSecret, "alice", kNow + 60), "alice", kNow);
  REQUIRE(r);
  CHECK(r->sub == "alice");
  CHECK(r->exp == kNow + 60);
  CHECK(v.verify(mint_jwt(kSecret, "alice", 0), "alice", kNow));
}

TEST_CASE("tokens that must be refused") {
  JwtVerifier v(kSecret);
  CHECK(reason(v.verify(mint_jwt("another-secret-another-secret-xx", "alice", 0), "alice", kNow)) ==
        "token signature does not verify");
  CHECK(reason(v.verify(mint_jwt(kSecret, "alice", kNow - 1), "alice", kNow)) == "token expired");
  CHECK(reason(v.verify(mint_jwt(kSecret, "alice", kNow), "alice", kNow)) == "token expired");
  CHECK(reason(v.verify(mint_jwt(kSecret, "bob", 0), "alice", kNow)) == "token sub does not match uid");
  CHECK(reason(v.verify(sign(R"({"alg":"none"})", R"({"sub":"alice"})"), "alice", kNow)) == "token alg must be HS256");
  // alg none with an empty signature, the classic attack
  CHECK(reason(v.verify(
            base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + base64url_encode(R"({"sub":"alice"})") + ".",
            "alice", kNow)) == "token alg must be HS256");
  CHECK(reason(v.verify(sign(R"({"alg":"HS512"})", R"({"sub":"alice"})"), "alice", kNow)) == "token alg must be HS256");
  CHECK(reason(v.verify(sign(R"({"typ":"JWT"})", R"({"sub":"alice"})"), "alice", kNow)) == "token alg must be HS256");
  CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", R"({"name":"alice"})"), "alice", kNow)) == "token has no sub");
  CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", R"({"sub":42})"), "alice", kNow)) == "token has no sub");
  CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", R"({"sub":"alice","exp":"soon"})"), "alice", kNow)) ==
        "token exp is not a date");
  CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", R"({"sub":"alice","nbf":1900000000})"), "alice", kNow)) ==
        "token not yet valid");
  CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", "[1,2]"), "alice", kNow)) == "token payload is not a JSON object");
  CHECK(reason(v.verify(sign("not json", R"({"sub":"alice"})"), "alice", kNow)) == "token header is not a JSON object");
}

TEST_CASE("garbage tokens are refused, never thrown") {
  JwtVerifier v(kSecret);
  for (const char* t : {"", ".", "..", "...", "a.b.c", "a.b", "!!!.???.###", "eyJ.eyJ.x", "a.b.c.d"})
    CHECK_FALSE(v.verify(t, "alice", kNow));
  CHECK_FALSE(v.verify(std::string(10000, 'a'), "alice", kNow));
  const std::string good = mint_jwt(kSecret, "alice", 0);
  // every single-character corruption fails
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = bad[i] == 'A' ? 'B' : 'A';
    if (bad == good) continue;
    CHECK_FALSE(v.verify(bad, "alice", kNow));
  }
}

TEST_CASE("exp as a fraction is accepted, truncated") {
  JwtVerifier v(kSecret);
  CHECK(v.verify(sign(R"({"alg":"HS256","typ":"JWT"})", R"({"sub":"alice","exp":1800000100.5})"), "alice", kNow));
}

TEST_CASE("a minted token carries iat when given one") {
  JwtVerifier v(kSecret);
  auto r = v.verify(mint_jwt(kSecret, "alice", kNow + 60, kNow - 5), "alice", kNow);
  REQUIRE(r);
  CHECK(r->iat == kNow - 5);
  auto none = v.verify(mint_jwt(kSecret, "alice", kNow + 60), "alice", kNow);
  REQUIRE(none);
  CHECK(none->iat == 0);  // absent: "issued at 0"
}

TEST_CASE("a token issued more than a minute in the future is refused: it would escape a revocation") {
  JwtVerifier v(kSecret);
  CHECK(v.verify(mint_jwt(kSecret, "alice", kNow + 3600, kNow + 60), "alice", kNow));  // a minute of skew
  auto r = v.verify(mint_jwt(kSecret, "alice", kNow + 3600, kNow + 61), "alice", kNow);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == StatusCode::kUnauthenticated);
  CHECK(r.error().message == "token iat is in the future");
}

// Dates that do not fit an int64 of seconds (or are no dates) are refused
// by a check, never cast: a cast of 1e300 to int64 was undefined behaviour
// (the sanitizer build, with float-cast-overflow, aborts on one).
TEST_CASE("exp, nbf and iat out of range are refused cleanly") {
  JwtVerifier v(kSecret);
  const char* bad_values[] = {"1e300",
                              "-1e300",
                              "1.8e19",
                              "9.3e18",
                              "18446744073709551615",
                              "9223372036854775807",
                              "-9223372036854775808",
                              "-1",
                              "-0.5",
                              "253402300800",
                              "253402300799.5",
                              "\"1800000100\"",
                              "true",
                              "[1800000100]",
                              "{}"};
  for (const char* claim : {"exp", "nbf", "iat"}) {
    for (const char* value : bad_values) {
      const std::string payload = std::string(R"({"sub":"alice",")") + claim + "\":" + value + "}";
      INFO(payload);
      CHECK(reason(v.verify(sign(R"({"alg":"HS256"})", payload), "alice", kNow)) ==
            std::string("token ") + claim + " is not a date");
    }
  }
  // The largest date still fits, and so does 0 for nbf and iat.
  auto last =
      v.verify(sign(R"({"alg":"HS256"})", R"({"sub":"alice","exp":253402300799,"iat":0,"nbf":0})"), "alice", kNow);
  REQUIRE(last);
  CHECK(last->exp == kMaxNumericDate);
  auto fraction = v.verify(sign(R"({"alg":"HS256"})", R"({"sub":"alice","iat":1799999999.9})"), "alice", kNow);
  REQUIRE(fraction);
  CHECK(fraction->iat == 1799999999);
}

TEST_CASE("base64url round trip") {
  std::string out;
  for (std::string s : {"", "f", "fo", "foo", "foob", "fooba", "foobar", "\xff\xfe\x00"}) {
    REQUIRE(base64url_decode(base64url_encode(s), out));
    CHECK(out == s);
  }
  CHECK_FALSE(base64url_decode("a", out));
  CHECK_FALSE(base64url_decode("ab+c", out));
  CHECK_FALSE(base64url_decode("ab=c", out));
}
