#include "auth/jwt.h"

#include <array>

#include "common/base64.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <nlohmann/json.hpp>

namespace im {
namespace {

constexpr std::int64_t kIatLeewayS = 60;  // clock skew allowed for a token's iat

Error unauthenticated(std::string message) {
  return make_error(StatusCode::kUnauthenticated, std::move(message));
}

// A NumericDate (RFC 7519): seconds since the epoch, from 0 to
// kMaxNumericDate; a fraction is truncated. Anything else (not a number,
// negative, larger, a float that is huge, infinite or NaN) is no date:
// refused, never cast out of range.
bool numeric_date(const nlohmann::json& v, std::int64_t& out) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(kMaxNumericDate)) return false;
    out = static_cast<std::int64_t>(u);
    return true;
  }
  if (v.is_number_integer()) {
    const auto i = v.get<std::int64_t>();
    if (i < 0 || i > kMaxNumericDate) return false;
    out = i;
    return true;
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    // Also false for NaN: every comparison with it is.
    if (!(d >= 0.0 && d <= static_cast<double>(kMaxNumericDate))) return false;
    out = static_cast<std::int64_t>(d);
    return true;
  }
  return false;
}

}  // namespace

std::string hmac_sha256(std::string_view key, std::string_view data) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), reinterpret_cast<const unsigned char*>(data.data()),
       data.size(), md.data(), &len);
  return std::string(reinterpret_cast<const char*>(md.data()), len);
}

Result<JwtClaims> JwtVerifier::verify(std::string_view token, std::string_view uid, std::int64_t now_s) const {
  if (token.size() > 8192) return unauthenticated("token too long");
  const auto dot1 = token.find('.');
  const auto dot2 = dot1 == std::string_view::npos ? dot1 : token.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || token.find('.', dot2 + 1) != std::string_view::npos)
    return unauthenticated("token is not a JWT");
  std::string header_json, payload_json, signature;
  if (!base64url_decode(token.substr(0, dot1), header_json) ||
      !base64url_decode(token.substr(dot1 + 1, dot2 - dot1 - 1), payload_json) ||
      !base64url_decode(token.substr(dot2 + 1), signature))
    return unauthenticated("token is not base64url");
  auto header = nlohmann::json::parse(header_json, nullptr, false);
  if (!header.is_object()) return unauthenticated("token header is not a JSON object");
  auto alg = header.find("alg");
  if (alg == header.end() || !alg->is_string() || *alg != "HS256") return unauthenticated("token alg must be HS256");
  // Signature before claims: nothing of an unsigned payload is believed.
  const std::string expected = hmac_sha256(secret_, token.substr(0, dot2));
  if (signature.size() != expected.size() || CRYPTO_memcmp(signature.data(), expected.data(), expected.size()) != 0)
    return unauthenticated("token signature does not verify");
  auto payload = nlohmann::json::parse(payload_json, nullptr, false);
  if (!payload.is_object()) return unauthenticated("token payload is not a JSON object");
  JwtClaims claims;
  auto sub = payload.find("sub");
  if (sub == payload.end() || !sub->is_string()) return unauthenticated("token has no sub");
  claims.sub = sub->get<std::string>();
  if (claims.sub != uid) return unauthenticated("token sub does not match uid");
  if (auto exp = payload.find("exp"); exp != payload.end()) {
    if (!numeric_date(*exp, claims.exp)) return unauthenticated("token exp is not a date");
    if (claims.exp <= now_s) return unauthenticated("token expired");
  }
  if (auto nbf = payload.find("nbf"); nbf != payload.end()) {
    std::int64_t not_before = 0;
    if (!numeric_date(*nbf, not_before)) return unauthenticated("token nbf is not a date");
    if (not_before > now_s) return unauthenticated("token not yet valid");
  }
  if (auto iat = payload.find("iat"); iat != payload.end()) {
    if (!numeric_date(*iat, claims.iat)) return unauthenticated("token iat is not a date");
    // A token "issued" in the future would escape a revocation (an admin
    // kick refuses tokens issued before it) until then; a minute of clock
    // skew is allowed.
    if (claims.iat > now_s + kIatLeewayS) return unauthenticated("token iat is in the future");
  }
  return claims;
}

std::string mint_jwt(std::string_view secret, std::string_view uid, std::int64_t exp_s, std::int64_t iat_s) {
  nlohmann::json payload = {{"sub", uid}};
  if (iat_s != 0) payload["iat"] = iat_s;
  if (exp_s != 0) payload["exp"] = exp_s;
  std::string signing_input =
      base64url_encode(R"({"alg":"HS256","typ":"JWT"})") + "." + base64url_encode(payload.dump());
  std::string signature = base64url_encode(hmac_sha256(secret, signing_input));
  return signing_input + "." + signature;
}

}  // namespace im
