#include "net/tls_context.h"

#include <asio/ssl/context.hpp>
#include <fmt/format.h>

namespace im::net {
namespace {

// TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 has its own,
// all modern); the server's preference does not matter among these.
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

Result<std::shared_ptr<asio::ssl::context>> build(const std::string& cert_file, const std::string& key_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  SSL_CTX* native = ctx->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  // Partial and moving writes: a connection writes what the socket takes and
  // retries from its own queue (connection.cpp). Released buffers: an idle
  // connection holds no record buffers.
  SSL_CTX_set_mode(native, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                               SSL_MODE_RELEASE_BUFFERS);
  if (SSL_CTX_set_cipher_list(native, kTls12Ciphers) != 1)
    return make_error(StatusCode::kInternal, "tls: the cipher list is refused by this OpenSSL");
  asio::error_code ec;
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) return make_error(StatusCode::kBadRequest, fmt::format("tls.cert_file {}: {}", cert_file, ec.message()));
  ctx->use_private_key_file(key_file, asio::ssl::context::pem, ec);
  if (ec) return make_error(StatusCode::kBadRequest, fmt::format("tls.key_file {}: {}", key_file, ec.message()));
  if (SSL_CTX_check_private_key(native) != 1)
    return make_error(StatusCode::kBadRequest,
                      fmt::format("tls.key_file {} does not match the certificate in {}", key_file, cert_file));
  return ctx;
}

}  // namespace

TlsContext::TlsContext(std::shared_ptr<asio::ssl::context> ctx) : ctx_(std::move(ctx)) {}

TlsContext::~TlsContext() = default;

Result<std::unique_ptr<TlsContext>> TlsContext::load(const std::string& cert_file, const std::string& key_file) {
  auto ctx = build(cert_file, key_file);
  if (!ctx) return ctx.error();
  return std::unique_ptr<TlsContext>(new TlsContext(std::move(*ctx)));
}

Result<Ok> TlsContext::reload(const std::string& cert_file, const std::string& key_file) {
  auto ctx = build(cert_file, key_file);
  if (!ctx) return ctx.error();
  std::lock_guard lock(mutex_);
  ctx_ = std::move(*ctx);
  return Ok{};
}

SSL* TlsContext::new_ssl() {
  std::lock_guard lock(mutex_);
  SSL* ssl = SSL_new(ctx_->native_handle());  // holds its own reference to the SSL_CTX
  if (ssl) SSL_set_accept_state(ssl);
  return ssl;
}

}  // namespace im::net
