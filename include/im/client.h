#pragma once
// The imserver client library: frames (PROTOCOL.md section 1) over TCP,
// WebSocket, TLS or WebSocket over TLS; requests matched to their responses
// by seq; a callback for everything the server starts (PUSH, KICKOUT,
// SERVER_PUSH, ERROR).
//
// Client is asynchronous and runs on the caller's asio::io_context (one
// thread can drive thousands of them); every method runs on that thread, and
// so does every handler it calls. SyncClient wraps one Client with its own
// thread, for tests and tools.
//
// Applications want ChatClient (im/chat_client.h) on top of it: login with a
// token provider, heartbeats, reconnects with backoff, resync, exactly-once
// delivery in inbox order, and a send outbox.
//
// Transports (ClientOptions::transport):
//   tcp  frames on a TCP stream (the default, `server.listen`)
//   ws   an HTTP/1.1 upgrade on `ws_path` (PROTOCOL.md 5b, `server.ws_listen`),
//        then each frame is one binary WebSocket message, masked with a fresh
//        random mask; pings are answered with pongs, a close with a close
//   tls  frames on TLS over TCP
//   wss  WebSocket over TLS
// An idle tcp or ws client costs about 6 KB (its socket, a 4 KiB read
// buffer; ws adds a message reader that holds no buffer between messages).
// tls and wss cost about 75 KB: asio::ssl::stream keeps two 17 KiB record
// buffers and a BIO pair of two more, besides OpenSSL's session (imbench
// W1, 10,000 idle clients, generator_bytes_per_conn).

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <google/protobuf/message_lite.h>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ssl/context.hpp>
#include <asio/ssl/stream.hpp>
#include <asio/steady_timer.hpp>

#include "im/protocol.h"

namespace im {

namespace ws {
class WsReader;
}  // namespace ws

// A frame as received: header and body bytes. A frame that came compressed
// (PROTOCOL 1: the session asked with LoginReq.compression = "zstd") has
// its body decompressed here (whether it was asked for or not), at most
// ClientOptions::max_frame_bytes of it, else the connection ends;
// header.flags keeps kFlagCompressed and header.body_len the compressed
// length, to tell what went over the wire.
struct Frame {
  FrameHeader header;
  std::string body;

  StatusCode status() const { return header.status; }
  bool ok() const { return header.status == StatusCode::kOk; }
  template <class T>
  bool parse(T& msg) const {
    return msg.ParseFromArray(body.data(), static_cast<int>(body.size()));
  }
  // The Error body's message of a failed response ("" when none).
  std::string error_message() const;
  // The Error body's retry_after_ms (0 when none).
  std::uint32_t retry_after_ms() const;
};

enum class Transport : std::uint8_t { kTcp, kWs, kTls, kWss };

// "tcp", "ws", "tls", "wss"; nullopt for anything else.
std::optional<Transport> parse_transport(std::string_view name);
std::string_view transport_name(Transport t);
inline bool uses_tls(Transport t) {
  return t == Transport::kTls || t == Transport::kWss;
}
inline bool uses_websocket(Transport t) {
  return t == Transport::kWs || t == Transport::kWss;
}

struct ClientOptions {
  // Default: kTcp.
  Transport transport = Transport::kTcp;
  // tls, wss: required. One context serves any number of clients on any
  // threads (OpenSSL makes each session from it); it holds the trust (see
  // make_client_tls_context) and the client keeps it alive.
  std::shared_ptr<asio::ssl::context> tls;
  // tls, wss: the name sent as SNI (when it is a DNS name) and checked
  // against the server's certificate when the context verifies (a DNS name
  // or an IP address). ws, wss: the Host header's name. Default (""): the
  // server's address as text.
  std::string server_name;
  // ws, wss: the upgrade's path. Default: "/ws".
  std::string ws_path = "/ws";
  // ws, wss: the Origin header. Default (""): none sent.
  std::string ws_origin;
  // The largest frame body accepted from the server; a larger one ends the
  // connection. Default: 16 MiB.
  std::uint32_t max_frame_bytes = 16 * 1024 * 1024;
};

// A TLS client context that verifies the server's certificate against the
// CA certificates (PEM) in `ca_file` (empty: the system's, OpenSSL's default
// paths, /etc/ssl/certs on Debian), TLS 1.2 and up. Throws
// asio::system_error when the file cannot be loaded: call it at start-up.
std::shared_ptr<asio::ssl::context> make_client_tls_context(const std::string& ca_file);
// A TLS client context that accepts any certificate: for loopback tests and
// benchmarks against a throwaway certificate, never across a network.
std::shared_ptr<asio::ssl::context> make_insecure_client_tls_context();

class Client : public std::enable_shared_from_this<Client> {
 public:
  using FrameHandler = std::function<void(Frame&)>;
  using CloseHandler = std::function<void(const asio::error_code&)>;
  using ConnectHandler = std::function<void(const asio::error_code&)>;

  static std::shared_ptr<Client> create(asio::io_context& io, std::uint32_t max_frame_bytes = 16 * 1024 * 1024);
  static std::shared_ptr<Client> create(asio::io_context& io, ClientOptions options);

  // Connects, then (tls, wss) does the TLS handshake and (ws, wss) the
  // WebSocket upgrade; `done` runs when the client can send, or with the
  // first error: asio::error::connection_refused when the server answered
  // the upgrade with anything but 101 (see ws_http_status()),
  // asio::error::invalid_argument for an answer that is not HTTP or a
  // tls/wss client without a context. A failed connect closes the client
  // without calling the close handler.
  // `source`: the local endpoint to connect from; a load generator with tens
  // of thousands of clients picks them itself, because the kernel's search
  // for a free ephemeral port then dominates its CPU. Unspecified: the
  // kernel's choice.
  void connect(const asio::ip::tcp::endpoint& server, ConnectHandler done, const asio::ip::tcp::endpoint& source = {});
  // Sends a request (seq chosen here, returned); `on_response` gets its answer.
  // When the connection ends first, `on_response` is dropped (destroyed, never
  // called), like every pending request's. A request that can no longer be
  // sent (after close(), ws_close(), a failed connect or the end of the
  // connection) is not sent: `on_response` is dropped at once and 0 is
  // returned (a seq is never 0).
  std::uint32_t request(Cmd cmd, const google::protobuf::MessageLite* body, FrameHandler on_response);
  std::uint32_t request(Cmd cmd, std::string_view body, FrameHandler on_response);
  // Sends a request that has no answer when it succeeds (ACK).
  void notify(Cmd cmd, const google::protobuf::MessageLite* body);
  // Sends bytes as they are, for tests of hostile input: on tcp and tls onto
  // the stream; on ws and wss as the payload of one binary message (so a
  // message may hold half a frame, or two).
  void send_raw(std::string bytes);
  // ws, wss: bytes onto the stream after the upgrade, with no WebSocket
  // framing (for tests of hostile WebSocket input: unmasked or text frames).
  // tcp, tls: the same as send_raw.
  void send_wire(std::string bytes);
  // Frames the server starts: PUSH, KICKOUT, SERVER_PUSH, ERROR, and answers
  // to no pending request. The server's HEARTBEAT is answered by the client.
  void on_frame(FrameHandler handler) { on_frame_ = std::move(handler); }
  // Runs once when the connection ends after a successful connect: with
  // asio::error::eof after the server's close frame (ws, wss; answered
  // first), asio::error::operation_aborted after close(),
  // asio::error::timed_out when the server did not end the connection within
  // kWsCloseTimeout of ws_close(), asio::error::invalid_argument when the
  // server broke the framing, else
  // the read or write error (eof; on tls, wss a server that closes without
  // close_notify gives asio::ssl::error::stream_truncated).
  void on_close(CloseHandler handler) { on_close_ = std::move(handler); }
  // Drops the connection at once (on ws, wss without a close frame; on tls,
  // wss without close_notify); pending requests are forgotten.
  void close();
  // ws, wss: starts the closing handshake with `code` (RFC 6455, 7.4); the
  // connection ends when the server's close arrives or it closes the socket,
  // and at the latest kWsCloseTimeout later: then the client closes the
  // socket itself (on_close gets asio::error::timed_out). Nothing is sent
  // after it; requests made after it are dropped (see request()).
  // tcp, tls: close().
  void ws_close(std::uint16_t code = 1000);
  // How long ws_close() waits for the server to end the connection.
  static constexpr std::chrono::milliseconds kWsCloseTimeout{2000};
  bool is_open() const { return socket_.is_open(); }
  std::size_t pending_requests() const { return pending_.size(); }
  // The TCP socket under any TLS or WebSocket layer: for its executor and
  // socket options, never for bytes.
  asio::ip::tcp::socket& socket() { return socket_; }
  Transport transport() const { return options_.transport; }
  // ws, wss: the code of the close frame the server sent (1005 when it sent
  // one without a code), 0 while none came.
  std::uint16_t ws_close_code() const { return ws_close_code_; }
  // ws, wss: the HTTP status of the server's answer to the upgrade (101 when
  // accepted), 0 before one came.
  int ws_http_status() const { return ws_http_status_; }
  // A refused upgrade's Retry-After in milliseconds (an admission refusal's
  // 503 carries it), 0 when it had none.
  std::uint32_t ws_retry_after_ms() const { return ws_retry_after_s_ * 1000; }

  Client(asio::io_context& io, std::uint32_t max_frame_bytes);
  Client(asio::io_context& io, ClientOptions options);
  ~Client();

 private:
  using TlsStream = asio::ssl::stream<asio::ip::tcp::socket&>;

  void start_tls(const asio::ip::tcp::endpoint& server, ConnectHandler done);
  void start_upgrade(const asio::ip::tcp::endpoint& server, ConnectHandler done);
  void read_upgrade_answer(ConnectHandler done);
  void become_ready(ConnectHandler done);
  void connect_failed(const asio::error_code& ec, const ConnectHandler& done);
  template <class Handler>
  void read_some(Handler&& handler);
  void read_more();
  // Handles the whole frames (or WebSocket events) at the front of the read
  // buffer; false when the connection is ending and reading must stop.
  bool consume();
  bool consume_frames(std::size_t& used);
  bool consume_messages(std::size_t& used);
  // Decompresses a COMPRESSED frame's body; false when it does not decompress.
  bool inflate(Frame& f) const;
  void deliver(Frame& f);
  void queue(std::string bytes);
  void write_more();
  void send_ws_close(std::uint16_t code);
  // Ends the connection with `ec` once the queued writes (a close frame) are out.
  void end_after_writes(const asio::error_code& ec);
  void fail(const asio::error_code& ec);
  std::uint32_t next_seq();

  ClientOptions options_;
  asio::ip::tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;    // tls, wss: the TLS session over socket_
  std::unique_ptr<ws::WsReader> ws_;  // ws, wss
  std::string ws_key_;                // ws, wss: during the upgrade only
  std::uint16_t ws_close_code_ = 0;
  int ws_http_status_ = 0;
  std::uint32_t ws_retry_after_s_ = 0;
  std::vector<char> rbuf_;
  std::size_t rlen_ = 0;
  std::vector<std::string> queued_;
  std::vector<std::string> writing_;
  std::unordered_map<std::uint32_t, FrameHandler> pending_;
  std::uint32_t seq_ = 0;
  FrameHandler on_frame_;
  CloseHandler on_close_;
  asio::error_code end_ec_;  // what on_close gets once an ending's writes are out
  bool ready_ = false;       // connected, TLS and upgrade done: queued writes may go
  bool close_sent_ = false;  // ws, wss: our close frame is queued; nothing may follow it
  bool ending_ = false;      // end_after_writes was called
  bool closed_ = false;
  // ws, wss: made by ws_close(), so that an open client carries no timer.
  std::unique_ptr<asio::steady_timer> close_timer_;
};

// A blocking client with its own I/O thread. Thread safe.
class SyncClient {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kDefaultTimeout{5000};

  SyncClient();
  ~SyncClient();
  SyncClient(const SyncClient&) = delete;
  SyncClient& operator=(const SyncClient&) = delete;

  // Over tcp.
  bool connect(const std::string& host, std::uint16_t port);
  // Over `options.transport`; `host` is an IP address. Call once.
  bool connect(const std::string& host, std::uint16_t port, const ClientOptions& options);
  // A request and its answer; nullopt when none came within `timeout` or
  // the connection closed first.
  std::optional<Frame> call(Cmd cmd, const google::protobuf::MessageLite* body,
                            std::chrono::milliseconds timeout = kDefaultTimeout);
  std::optional<Frame> call_raw(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout = kDefaultTimeout);
  void notify(Cmd cmd, const google::protobuf::MessageLite* body);
  // As Client::send_raw and Client::send_wire.
  void send_raw(std::string bytes);
  void send_wire(std::string bytes);
  // The next frame the server started (PUSH, KICKOUT, ERROR, ...).
  std::optional<Frame> next_frame(std::chrono::milliseconds timeout = kDefaultTimeout);
  // Waits until the server closes the connection.
  bool wait_closed(std::chrono::milliseconds timeout = kDefaultTimeout);
  bool is_closed();
  void close();
  // As Client::ws_close, ws_close_code and ws_http_status.
  void ws_close(std::uint16_t code = 1000);
  std::uint16_t ws_close_code();
  int ws_http_status();

 private:
  // Makes client_ with this object's handlers; on the I/O thread (or before it runs).
  void make_client(const ClientOptions& options);

  asio::io_context io_;
  std::shared_ptr<Client> client_;  // touched on the I/O thread only
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Frame> frames_;
  bool closed_ = false;
};

}  // namespace im
