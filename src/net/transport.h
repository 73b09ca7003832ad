#pragma once
// What a listener speaks: IM frames straight on the stream, or WebSocket
// (RFC 6455, PROTOCOL 5b) carrying one frame per binary message; either of
// them inside TLS or not. Owned by the Server; outlives every listener and
// connection.

#include <string>
#include <vector>

namespace im::net {

class TlsContext;
class WebRoot;

struct Transport {
  const char* name = "tcp";  // as in the "listening" line: tcp or ws
  bool websocket = false;
  TlsContext* tls = nullptr;                                   // TLS on this listener when set
  const WebRoot* web_root = nullptr;                           // websocket: the files of GET /
  const std::vector<std::string>* allowed_origins = nullptr;  // websocket: empty or null = any
};

}  // namespace im::net
