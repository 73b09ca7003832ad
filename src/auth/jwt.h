#pragma once
// JWT HS256 verification and minting (RFC 7519 / 7515, compact form).
// Thread safe: a JwtVerifier is immutable after construction.

#include <cstdint>
#include <string>
#include <string_view>

#include "common/base64.h"
#include "im/result.h"

namespace im {

struct JwtClaims {
  std::string sub;
  std::int64_t exp = 0;  // seconds since the epoch; 0 = no expiry
};

std::string mint_jwt(std::string_view secret, std::string_view uid, std::int64_t exp_s);

class JwtVerifier {
 public:
  explicit JwtVerifier(std::string secret) : secret_(std::move(secret)) {}

  // Checks the signature (constant-time), that `alg` is HS256, that `sub`
  // equals `uid`, and that `exp` and `nbf`, when present, hold at `now_s`.
  // Errors are UNAUTHENTICATED with a reason fit for the client.
  Result<JwtClaims> verify(std::string_view token, std::string_view uid, std::int64_t now_s) const;
  // A token for `uid` signed with this secret.
  std::string mint(std::string_view uid, std::int64_t exp_s) const { return mint_jwt(secret_, uid, exp_s); }

 private:
  std::string secret_;
};

// A token for `uid` signed with `secret`; `exp_s` 0 leaves `exp` out.
std::string mint_jwt(std::string_view secret, std::string_view uid, std::int64_t exp_s);

// HMAC-SHA256 of `data` with `key`: 32 raw bytes.
std::string hmac_sha256(std::string_view key, std::string_view data);

}  // namespace im
