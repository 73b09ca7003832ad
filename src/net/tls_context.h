#pragma once
// The server's TLS configuration: one asio::ssl::context (OpenSSL 3) holding
// the certificate chain and key, TLS 1.2 and 1.3 only, a modern cipher list.
// reload() builds a fresh context from the files and swaps it in only when
// it loads; connections already open keep the context they started with
// (OpenSSL counts its references), new ones get the new certificate.
//
// Thread safe.

#include <memory>
#include <mutex>
#include <string>

#include <openssl/ssl.h>

#include "im/result.h"

namespace asio::ssl {
class context;
}

namespace im::net {

class TlsContext {
 public:
  // Loads the files; an error says which file and why.
  static Result<std::unique_ptr<TlsContext>> load(const std::string& cert_file, const std::string& key_file);
  ~TlsContext();

  // Re-reads `cert_file` and `key_file`; on an error the current certificate stays.
  Result<Ok> reload(const std::string& cert_file, const std::string& key_file);
  // A server-side SSL object over the current context (nullptr when OpenSSL
  // is out of memory). The caller owns it (SSL_free).
  SSL* new_ssl();

 private:
  explicit TlsContext(std::shared_ptr<asio::ssl::context> ctx);

  std::mutex mutex_;
  std::shared_ptr<asio::ssl::context> ctx_;  // guarded by mutex_
};

}  // namespace im::net
