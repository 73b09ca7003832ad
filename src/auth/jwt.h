#pragma once
// JWT HS256 verification and minting (RFC 7519 / 7515, compact form).
// Thread safe: a JwtVerifier is immutable after construction.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "im/result.h"

namespace im {

// The largest NumericDate accepted in `exp`, `nbf` and `iat`: the end of
// the year 9999. Larger (or negative, or not a number) is refused, so a
// date in seconds can always be turned into milliseconds.
inline constexpr std::int64_t kMaxNumericDate = 253402300799;

struct JwtClaims {
  std::string sub;
  std::int64_t exp = 0;  // seconds since the epoch; 0 = no expiry
  std::int64_t iat = 0;  // seconds since the epoch; 0 = absent ("issued at 0")
};

// A token for `uid` signed with `secret`; `exp_s` 0 leaves `exp` out and
// `iat_s` 0 leaves `iat` out.
std::string mint_jwt(std::string_view secret, std::string_view uid, std::int64_t exp_s, std::int64_t iat_s = 0);

class JwtVerifier {
 public:
  explicit JwtVerifier(std::string secret) : secret_(std::move(secret)) {}

  // Checks the signature (constant-time), that `alg` is HS256, that `sub`
  // equals `uid`, that `exp` and `nbf`, when present, hold at `now_s`, and
  // that `exp`, `nbf` and `iat` are dates (numeric_date in jwt.cpp).
  // Errors are UNAUTHENTICATED with a reason fit for the client.
  Result<JwtClaims> verify(std::string_view token, std::string_view uid, std::int64_t now_s) const;
  // A token for `uid` signed with this secret.
  std::string mint(std::string_view uid, std::int64_t exp_s, std::int64_t iat_s) const {
    return mint_jwt(secret_, uid, exp_s, iat_s);
  }

 private:
  std::string secret_;
};

// HMAC-SHA256 of `data` with `key`: 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace im
