// The JWT verifier (src/auth/jwt.h), as LOGIN runs it.
//
// Input: [mode] [bytes]. Mode bit 0 clear: the bytes are the token. Set:
// the bytes are a header JSON and a payload JSON separated by '\n', signed
// here with the verifier's secret, so the claims are reached. Bits 1-2
// choose the uid the token must name. Whatever the token, verify() answers
// UNAUTHENTICATED with a reason, or claims for that uid that hold now.

#include <string>

#include "auth/jwt.h"
#include "common/base64.h"
#include "fuzz.h"

namespace {

constexpr std::string_view kSecret = "fuzz-secret-fuzz-secret-fuzz-secret-0123";
constexpr std::int64_t kNow = 1700000000;
constexpr const char* kUidChoices[] = {"alice", "", "a.b_c@d-e", "0"};

}  // namespace

int fuzz_one(const std::uint8_t* data, std::size_t size) {
  im::fuzz::Reader in(data, size);
  const std::uint8_t mode = in.byte();
  const std::string uid = kUidChoices[(mode >> 1) & 3];
  std::string token;
  if ((mode & 1) == 0) {
    token = std::string(in.rest());
  } else {
    const std::string_view header = in.until('\n');
    const std::string_view payload = in.rest();
    token = im::base64url_encode(header) + "." + im::base64url_encode(payload);
    token += "." + im::base64url_encode(im::hmac_sha256(kSecret, token));
  }
  const im::JwtVerifier verifier{std::string(kSecret)};
  auto claims = verifier.verify(token, uid, kNow);
  if (claims) {
    FUZZ_CHECK(claims->sub == uid);
    FUZZ_CHECK(claims->exp == 0 || claims->exp > kNow);
    // Only a signed token verifies (the fuzzer holds no key in mode 0 but
    // may copy a corpus token: then it must be the signed input itself).
    FUZZ_CHECK(token.size() <= 8192);
  } else {
    FUZZ_CHECK(claims.error().code == im::StatusCode::kUnauthenticated);
    FUZZ_CHECK(!claims.error().message.empty());
  }
  // Another secret never verifies what this one signed.
  const im::JwtVerifier other{"another-secret-another-secret-0123456"};
  if (mode & 1) FUZZ_CHECK(!other.verify(token, uid, kNow));
  return 0;
}
