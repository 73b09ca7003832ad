#include "im/client.h"

#include <array>
#include <cstring>
#include <random>
#include <span>

#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include "im/frame_codec.h"
#include "net/ws_codec.h"
#include "net/ws_handshake.h"
#include "proto/im.pb.h"

namespace im {
namespace {
// A client starts small and grows its buffer with the frames it gets:
// thousands of mostly idle clients per process must stay cheap.
constexpr std::size_t kInitialReadBuffer = 4096;
constexpr std::size_t kMinReadRoom = 1024;

// A WebSocket mask must be unpredictable (RFC 6455, 5.3): drawn from
// OpenSSL's generator, 64 masks per call. Per thread, because every client
// runs on its io_context's thread and there may be several.
std::array<std::uint8_t, 4> random_mask() {
  thread_local std::array<std::uint8_t, 256> pool{};
  thread_local std::size_t used = pool.size();
  if (used == pool.size()) {
    if (RAND_bytes(pool.data(), static_cast<int>(pool.size())) != 1) {
      std::random_device rd;  // OpenSSL's generator failed: the OS's, slower
      for (auto& b : pool) b = static_cast<std::uint8_t>(rd());
    }
    used = 0;
  }
  std::array<std::uint8_t, 4> mask;
  std::memcpy(mask.data(), pool.data() + used, mask.size());
  used += mask.size();
  return mask;
}

// One masked client frame (FIN set) carrying `payload`.
std::string ws_client_frame(ws::Opcode opcode, std::string_view payload) {
  const auto mask = random_mask();
  std::array<char, ws::kMaxHeadSize> head;
  const std::size_t n = ws::encode_head(opcode, payload.size(), head, &mask);
  std::string out;
  out.reserve(n + payload.size());
  out.append(head.data(), n);
  out.append(payload);
  ws::apply_mask(std::span<char>(out.data() + n, payload.size()), mask);
  return out;
}

ClientOptions tcp_options(std::uint32_t max_frame_bytes) {
  ClientOptions options;
  options.max_frame_bytes = max_frame_bytes;
  return options;
}

std::shared_ptr<asio::ssl::context> base_client_context() {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                   asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 | asio::ssl::context::no_tlsv1_1);
  return ctx;
}

}  // namespace

std::string Frame::error_message() const {
  v1::Error e;
  return header.status != StatusCode::kOk && parse(e) ? e.message() : std::string();
}

std::uint32_t Frame::retry_after_ms() const {
  v1::Error e;
  return header.status != StatusCode::kOk && parse(e) ? e.retry_after_ms() : 0;
}

std::optional<Transport> parse_transport(std::string_view name) {
  if (name == "tcp") return Transport::kTcp;
  if (name == "ws") return Transport::kWs;
  if (name == "tls") return Transport::kTls;
  if (name == "wss") return Transport::kWss;
  return std::nullopt;
}

std::string_view transport_name(Transport t) {
  switch (t) {
    case Transport::kTcp: return "tcp";
    case Transport::kWs: return "ws";
    case Transport::kTls: return "tls";
    case Transport::kWss: return "wss";
  }
  return "?";
}

std::shared_ptr<asio::ssl::context> make_client_tls_context(const std::string& ca_file) {
  auto ctx = base_client_context();
  if (ca_file.empty())
    ctx->set_default_verify_paths();
  else
    ctx->load_verify_file(ca_file);
  ctx->set_verify_mode(asio::ssl::verify_peer);
  return ctx;
}

std::shared_ptr<asio::ssl::context> make_insecure_client_tls_context() {
  auto ctx = base_client_context();
  ctx->set_verify_mode(asio::ssl::verify_none);
  return ctx;
}

std::shared_ptr<Client> Client::create(asio::io_context& io, std::uint32_t max_frame_bytes) {
  return std::make_shared<Client>(io, max_frame_bytes);
}

std::shared_ptr<Client> Client::create(asio::io_context& io, ClientOptions options) {
  return std::make_shared<Client>(io, std::move(options));
}

Client::Client(asio::io_context& io, ClientOptions options)
    : options_(std::move(options)), socket_(io), rbuf_(kInitialReadBuffer) {
  if (uses_tls(options_.transport) && options_.tls) tls_ = std::make_unique<TlsStream>(socket_, *options_.tls);
  if (uses_websocket(options_.transport))
    ws_ = std::make_unique<ws::WsReader>(std::uint64_t{options_.max_frame_bytes} + kHeaderSize, ws::Side::kClient);
}

Client::Client(asio::io_context& io, std::uint32_t max_frame_bytes) : Client(io, tcp_options(max_frame_bytes)) {}

Client::~Client() = default;

template <class Handler>
void Client::read_some(Handler&& handler) {
  if (rbuf_.size() - rlen_ < kMinReadRoom) rbuf_.resize(rbuf_.size() * 2);
  const auto room = asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_);
  if (tls_) {
    tls_->async_read_some(room, std::forward<Handler>(handler));
  } else {
    socket_.async_read_some(room, std::forward<Handler>(handler));
  }
}

void Client::connect(const asio::ip::tcp::endpoint& server, ConnectHandler done,
                     const asio::ip::tcp::endpoint& source) {
  if (uses_tls(options_.transport) && !tls_) {
    closed_ = true;
    done(asio::error::invalid_argument);
    return;
  }
  if (!source.address().is_unspecified()) {
    asio::error_code ec;
    socket_.open(server.protocol(), ec);
    // TIME_WAIT leftovers of an earlier run use the same local ports with
    // another server port: a different 4-tuple, so reuse is safe.
    if (!ec) socket_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) socket_.bind(source, ec);
    if (ec) {
      connect_failed(ec, done);
      return;
    }
  }
  socket_.async_connect(server,
                        [self = shared_from_this(), server, done = std::move(done)](const asio::error_code& ec) {
                          if (ec) {
                            self->connect_failed(ec, done);
                            return;
                          }
                          asio::error_code opt_ec;
                          self->socket_.set_option(asio::ip::tcp::no_delay(true), opt_ec);
                          self->start_tls(server, std::move(done));
                        });
}

void Client::start_tls(const asio::ip::tcp::endpoint& server, ConnectHandler done) {
  if (!tls_) {
    start_upgrade(server, std::move(done));
    return;
  }
  SSL* ssl = tls_->native_handle();
  const std::string name = options_.server_name.empty() ? server.address().to_string() : options_.server_name;
  asio::error_code not_ip;
  asio::ip::make_address(name, not_ip);
  // SNI carries DNS names only (RFC 6066, 3).
  if (not_ip) SSL_set_tlsext_host_name(ssl, name.c_str());
  // The context decides whether to verify; when it does, the certificate
  // must also be for this name.
  if ((SSL_get_verify_mode(ssl) & SSL_VERIFY_PEER) != 0) {
    const int set =
        not_ip ? SSL_set1_host(ssl, name.c_str()) : X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str());
    if (set != 1) {
      connect_failed(asio::error::invalid_argument, done);
      return;
    }
  }
  tls_->async_handshake(asio::ssl::stream_base::client,
                        [self = shared_from_this(), server, done = std::move(done)](const asio::error_code& ec) {
                          if (ec) {
                            self->connect_failed(ec, done);
                            return;
                          }
                          self->start_upgrade(server, std::move(done));
                        });
}

void Client::start_upgrade(const asio::ip::tcp::endpoint& server, ConnectHandler done) {
  if (!ws_) {
    become_ready(std::move(done));
    return;
  }
  std::string host = options_.server_name;
  if (host.empty()) {
    host = server.address().to_string();
    if (server.address().is_v6()) host = "[" + host + "]";
  }
  host += ":" + std::to_string(server.port());
  ws_key_ = ws::random_key();
  auto request = std::make_shared<std::string>(ws::client_request(host, options_.ws_path, ws_key_, options_.ws_origin));
  auto on_written = [self = shared_from_this(), request, done = std::move(done)](const asio::error_code& ec,
                                                                                 std::size_t) {
    if (ec) {
      self->connect_failed(ec, done);
      return;
    }
    self->read_upgrade_answer(std::move(done));
  };
  if (tls_) {
    asio::async_write(*tls_, asio::buffer(*request), std::move(on_written));
  } else {
    asio::async_write(socket_, asio::buffer(*request), std::move(on_written));
  }
}

void Client::read_upgrade_answer(ConnectHandler done) {
  read_some([self = shared_from_this(), done = std::move(done)](const asio::error_code& ec, std::size_t n) {
    if (ec) {
      self->connect_failed(ec, done);
      return;
    }
    self->rlen_ += n;
    const ws::ParsedAnswer a = ws::parse_answer(std::string_view(self->rbuf_.data(), self->rlen_), self->ws_key_);
    self->ws_http_status_ = a.http_status;
    self->ws_retry_after_s_ = a.retry_after_s;
    if (a.status == ws::HeadParse::kNeedMore) {
      self->read_upgrade_answer(std::move(done));
      return;
    }
    if (a.status == ws::HeadParse::kBad) {
      const bool refused = a.http_status != 0 && a.http_status != 101;
      self->connect_failed(refused ? asio::error::connection_refused : asio::error::invalid_argument, done);
      return;
    }
    // The server may have sent frames right behind its answer: keep them.
    std::memmove(self->rbuf_.data(), self->rbuf_.data() + a.consumed, self->rlen_ - a.consumed);
    self->rlen_ -= a.consumed;
    std::string().swap(self->ws_key_);
    self->become_ready(std::move(done));
  });
}

void Client::become_ready(ConnectHandler done) {
  ready_ = true;
  done({});
  if (closed_) return;
  write_more();  // anything sent before the connection was ready
  if (rlen_ > 0 && !consume()) return;
  if (!closed_) read_more();
}

void Client::connect_failed(const asio::error_code& ec, const ConnectHandler& done) {
  closed_ = true;
  asio::error_code ignored;
  socket_.close(ignored);
  pending_.clear();
  done(ec);
}

std::uint32_t Client::next_seq() {
  if (++seq_ == 0) ++seq_;
  return seq_;
}

std::uint32_t Client::request(Cmd cmd, std::string_view body, FrameHandler on_response) {
  // Nothing can be sent any more: the handler would never run. Dropped here,
  // as the end of a connection drops its pending requests' handlers.
  if (closed_ || close_sent_ || ending_) return 0;
  FrameHeader h;
  h.cmd = cmd;
  h.seq = next_seq();
  if (on_response) pending_.emplace(h.seq, std::move(on_response));
  send_raw(encode_frame(h, body));
  return h.seq;
}

std::uint32_t Client::request(Cmd cmd, const google::protobuf::MessageLite* body, FrameHandler on_response) {
  return request(cmd, body ? body->SerializeAsString() : std::string(), std::move(on_response));
}

void Client::notify(Cmd cmd, const google::protobuf::MessageLite* body) {
  request(cmd, body, nullptr);
}

void Client::send_raw(std::string bytes) {
  if (closed_ || close_sent_) return;
  queue(ws_ ? ws_client_frame(ws::Opcode::kBinary, bytes) : std::move(bytes));
}

void Client::send_wire(std::string bytes) {
  if (closed_ || close_sent_) return;
  queue(std::move(bytes));
}

void Client::queue(std::string bytes) {
  if (closed_) return;
  queued_.push_back(std::move(bytes));
  if (writing_.empty()) write_more();
}

void Client::write_more() {
  if (queued_.empty() || closed_ || !ready_) return;
  writing_.swap(queued_);
  auto on_written = [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
    self->writing_.clear();
    if (ec) {
      self->fail(self->ending_ ? self->end_ec_ : ec);
      return;
    }
    if (self->ending_ && self->queued_.empty()) {
      self->fail(self->end_ec_);
      return;
    }
    self->write_more();
  };
  if (tls_) {
    // Asio's TLS stream writes one buffer of a sequence per record (and
    // system call): a batch goes out as one buffer.
    if (writing_.size() > 1) {
      std::size_t total = 0;
      for (const auto& w : writing_) total += w.size();
      std::string all;
      all.reserve(total);
      for (const auto& w : writing_) all += w;
      writing_.assign(1, std::move(all));
    }
    asio::async_write(*tls_, asio::buffer(writing_.front()), std::move(on_written));
    return;
  }
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(writing_.size());
  for (const auto& w : writing_) bufs.emplace_back(asio::buffer(w));
  asio::async_write(socket_, bufs, std::move(on_written));
}

void Client::read_more() {
  read_some([self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
    if (ec) {
      self->fail(ec);
      return;
    }
    self->rlen_ += n;
    if (self->consume() && !self->closed_) self->read_more();
  });
}

bool Client::consume() {
  std::size_t used = 0;
  const bool go_on = ws_ ? consume_messages(used) : consume_frames(used);
  if (used > 0) {
    std::memmove(rbuf_.data(), rbuf_.data() + used, rlen_ - used);
    rlen_ -= used;
  }
  return go_on;
}

bool Client::consume_frames(std::size_t& used) {
  for (;;) {
    const Decoded d = decode_frame(std::string_view(rbuf_.data() + used, rlen_ - used), options_.max_frame_bytes);
    if (d.status == DecodeStatus::kNeedMore) return true;
    if (d.status == DecodeStatus::kBad) {
      fail(asio::error::invalid_argument);
      return false;
    }
    used += d.consumed;
    Frame f{d.header, std::string(d.body)};
    if (!inflate(f)) {
      fail(asio::error::invalid_argument);
      return false;
    }
    deliver(f);
  }
}

bool Client::consume_messages(std::size_t& used) {
  for (;;) {
    const ws::WsEvent e = ws_->next(std::span<char>(rbuf_.data() + used, rlen_ - used));
    used += e.consumed;
    switch (e.kind) {
      case ws::WsEventKind::kNeedMore: return true;
      case ws::WsEventKind::kMessage: {
        // Exactly one frame per message (PROTOCOL.md 5b).
        const Decoded d = decode_frame(e.payload, options_.max_frame_bytes);
        if (d.status != DecodeStatus::kFrame || d.consumed != e.payload.size()) {
          send_ws_close(ws::kCloseProtocolError);
          end_after_writes(asio::error::invalid_argument);
          return false;
        }
        Frame f{d.header, std::string(d.body)};
        if (!inflate(f)) {
          send_ws_close(ws::kCloseProtocolError);
          end_after_writes(asio::error::invalid_argument);
          return false;
        }
        deliver(f);
        break;
      }
      case ws::WsEventKind::kPing:
        if (!close_sent_) queue(ws_client_frame(ws::Opcode::kPong, e.payload));
        break;
      case ws::WsEventKind::kPong: break;
      case ws::WsEventKind::kClose:
        ws_close_code_ = e.close_code;
        send_ws_close(e.close_code);  // the echo (RFC 6455, 5.5.1), unless ours went first
        end_after_writes(asio::error::eof);
        return false;
      case ws::WsEventKind::kError:
        send_ws_close(e.close_code);
        end_after_writes(asio::error::invalid_argument);
        return false;
    }
  }
}

bool Client::inflate(Frame& f) const {
  if ((f.header.flags & kFlagCompressed) == 0) return true;
  auto body = decompress_body(f.body, options_.max_frame_bytes);
  if (!body) return false;
  f.body = std::move(*body);
  return true;
}

void Client::deliver(Frame& f) {
  if (f.header.is_response()) {
    auto it = pending_.find(f.header.seq);
    if (it != pending_.end()) {
      FrameHandler h = std::move(it->second);
      pending_.erase(it);
      h(f);
      return;
    }
  } else if (f.header.cmd == Cmd::kHeartbeat) {
    FrameHeader answer = f.header;
    answer.flags = kFlagResponse;
    send_raw(encode_frame(answer, {}));
    return;
  }
  if (on_frame_) on_frame_(f);
}

void Client::send_ws_close(std::uint16_t code) {
  if (closed_ || close_sent_) return;
  // 1005 is never sent: it stands for "a close without a code".
  queue(ws_client_frame(ws::Opcode::kClose, code == ws::kCloseNoStatus ? std::string() : ws::close_payload(code)));
  close_sent_ = true;
}

void Client::end_after_writes(const asio::error_code& ec) {
  if (closed_ || ending_) return;
  ending_ = true;
  end_ec_ = ec;
  if (writing_.empty() && queued_.empty()) fail(ec);
}

void Client::ws_close(std::uint16_t code) {
  if (!ws_ || !ready_) {
    close();
    return;
  }
  send_ws_close(code);
  if (closed_ || close_timer_) return;
  // A server that never answers the close (or never reads it) must not keep
  // the connection, and on_close waiting, forever.
  close_timer_ = std::make_unique<asio::steady_timer>(socket_.get_executor(), kWsCloseTimeout);
  close_timer_->async_wait([self = shared_from_this()](const asio::error_code& ec) {
    if (ec || self->closed_) return;
    self->fail(asio::error::timed_out);
  });
}

void Client::fail(const asio::error_code& ec) {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  socket_.close(ignored);
  if (close_timer_) close_timer_->cancel();
  auto pending = std::move(pending_);
  pending_.clear();
  if (on_close_) on_close_(ec);
}

void Client::close() {
  fail(asio::error::operation_aborted);
}

SyncClient::SyncClient() {
  make_client({});
  thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
}

SyncClient::~SyncClient() {
  close();
  io_.stop();
  thread_.join();
}

void SyncClient::make_client(const ClientOptions& options) {
  client_ = Client::create(io_, options);
  client_->on_frame([this](Frame& f) {
    std::lock_guard lock(mutex_);
    frames_.push_back(std::move(f));
    cv_.notify_all();
  });
  client_->on_close([this](const asio::error_code&) {
    std::lock_guard lock(mutex_);
    closed_ = true;
    cv_.notify_all();
  });
}

bool SyncClient::connect(const std::string& host, std::uint16_t port) {
  return connect(host, port, ClientOptions{});
}

bool SyncClient::connect(const std::string& host, std::uint16_t port, const ClientOptions& options) {
  asio::error_code bad_host;
  const auto address = asio::ip::make_address(host, bad_host);
  if (bad_host) return false;
  std::promise<asio::error_code> done;
  asio::post(io_, [&] {
    make_client(options);
    client_->connect({address, port}, [&](const asio::error_code& ec) { done.set_value(ec); });
  });
  return !done.get_future().get();
}

std::optional<Frame> SyncClient::call_raw(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout) {
  auto answer = std::make_shared<std::promise<std::optional<Frame>>>();
  auto result = answer->get_future();
  // Only the request holds the promise (not this frame too), so a closed
  // connection, dropping it, ends the wait at once.
  asio::post(io_, [this, cmd, b = std::string(body), answer = std::move(answer)] {
    if (!client_->is_open()) {
      answer->set_value(std::nullopt);
      return;
    }
    client_->request(cmd, b, [answer](Frame& f) { answer->set_value(std::move(f)); });
  });
  // A closed connection drops pending handlers (and with them the promise):
  // the future then reports a broken promise, which is "no answer".
  if (result.wait_for(timeout) != std::future_status::ready) return std::nullopt;
  try {
    return result.get();
  } catch (const std::future_error&) {
    return std::nullopt;
  }
}

std::optional<Frame> SyncClient::call(Cmd cmd, const google::protobuf::MessageLite* body,
                                      std::chrono::milliseconds timeout) {
  return call_raw(cmd, body ? body->SerializeAsString() : std::string(), timeout);
}

void SyncClient::notify(Cmd cmd, const google::protobuf::MessageLite* body) {
  asio::post(io_,
             [this, cmd, b = body ? body->SerializeAsString() : std::string()] { client_->request(cmd, b, nullptr); });
}

void SyncClient::send_raw(std::string bytes) {
  asio::post(io_, [this, b = std::move(bytes)]() mutable { client_->send_raw(std::move(b)); });
}

void SyncClient::send_wire(std::string bytes) {
  asio::post(io_, [this, b = std::move(bytes)]() mutable { client_->send_wire(std::move(b)); });
}

std::optional<Frame> SyncClient::next_frame(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  if (!cv_.wait_for(lock, timeout, [&] { return !frames_.empty() || closed_; }) || frames_.empty()) return std::nullopt;
  Frame f = std::move(frames_.front());
  frames_.pop_front();
  return f;
}

bool SyncClient::wait_closed(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return cv_.wait_for(lock, timeout, [&] { return closed_; });
}

bool SyncClient::is_closed() {
  std::lock_guard lock(mutex_);
  return closed_;
}

void SyncClient::close() {
  std::promise<void> done;
  asio::post(io_, [&] {
    client_->close();
    done.set_value();
  });
  done.get_future().wait();
}

void SyncClient::ws_close(std::uint16_t code) {
  asio::post(io_, [this, code] { client_->ws_close(code); });
}

std::uint16_t SyncClient::ws_close_code() {
  std::promise<std::uint16_t> code;
  asio::post(io_, [&] { code.set_value(client_->ws_close_code()); });
  return code.get_future().get();
}

int SyncClient::ws_http_status() {
  std::promise<int> status;
  asio::post(io_, [&] { status.set_value(client_->ws_http_status()); });
  return status.get_future().get();
}

}  // namespace im
