#include "im/client.h"

#include <asio/connect.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include "im/frame_codec.h"
#include "proto/im.pb.h"

namespace im {
namespace {
// A client starts small and grows its buffer with the frames it gets:
// thousands of mostly idle clients per process must stay cheap.
constexpr std::size_t kInitialReadBuffer = 4096;
constexpr std::size_t kMinReadRoom = 1024;
}  // namespace

std::string Frame::error_message() const {
  v1::Error e;
  return header.status != StatusCode::kOk && parse(e) ? e.message() : std::string();
}

std::uint32_t Frame::retry_after_ms() const {
  v1::Error e;
  return header.status != StatusCode::kOk && parse(e) ? e.retry_after_ms() : 0;
}

std::shared_ptr<Client> Client::create(asio::io_context& io, std::uint32_t max_frame_bytes) {
  return std::make_shared<Client>(io, max_frame_bytes);
}

Client::Client(asio::io_context& io, std::uint32_t max_frame_bytes)
    : socket_(io), max_frame_bytes_(max_frame_bytes), rbuf_(kInitialReadBuffer) {}

void Client::connect(const asio::ip::tcp::endpoint& server, std::function<void(const asio::error_code&)> done,
                     const asio::ip::tcp::endpoint& source) {
  if (!source.address().is_unspecified()) {
    asio::error_code ec;
    socket_.open(server.protocol(), ec);
    // TIME_WAIT leftovers of an earlier run use the same local ports with
    // another server port: a different 4-tuple, so reuse is safe.
    if (!ec) socket_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) socket_.bind(source, ec);
    if (ec) {
      done(ec);
      return;
    }
  }
  socket_.async_connect(server, [self = shared_from_this(), done = std::move(done)](const asio::error_code& ec) {
    if (!ec) {
      asio::error_code opt_ec;
      self->socket_.set_option(asio::ip::tcp::no_delay(true), opt_ec);
      self->read_more();
    }
    done(ec);
  });
}

std::uint32_t Client::next_seq() {
  if (++seq_ == 0) ++seq_;
  return seq_;
}

std::uint32_t Client::request(Cmd cmd, std::string_view body, FrameHandler on_response) {
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
  if (closed_) return;
  queued_.push_back(std::move(bytes));
  if (writing_.empty()) write_more();
}

void Client::write_more() {
  if (queued_.empty() || closed_) return;
  writing_.swap(queued_);
  std::vector<asio::const_buffer> bufs;
  bufs.reserve(writing_.size());
  for (const auto& w : writing_) bufs.emplace_back(asio::buffer(w));
  asio::async_write(socket_, bufs, [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
    self->writing_.clear();
    if (ec) {
      self->fail(ec);
      return;
    }
    self->write_more();
  });
}

void Client::read_more() {
  if (rbuf_.size() - rlen_ < kMinReadRoom) rbuf_.resize(rbuf_.size() * 2);
  socket_.async_read_some(asio::buffer(rbuf_.data() + rlen_, rbuf_.size() - rlen_),
                          [self = shared_from_this()](const asio::error_code& ec, std::size_t n) {
                            if (ec) {
                              self->fail(ec);
                              return;
                            }
                            self->rlen_ += n;
                            std::size_t used = 0;
                            for (;;) {
                              Decoded d = decode_frame(std::string_view(self->rbuf_.data() + used, self->rlen_ - used),
                                                       self->max_frame_bytes_);
                              if (d.status == DecodeStatus::kNeedMore) break;
                              if (d.status == DecodeStatus::kBad) {
                                self->fail(asio::error::invalid_argument);
                                return;
                              }
                              used += d.consumed;
                              Frame f{d.header, std::string(d.body)};
                              if (f.header.is_response()) {
                                auto it = self->pending_.find(f.header.seq);
                                if (it != self->pending_.end()) {
                                  FrameHandler h = std::move(it->second);
                                  self->pending_.erase(it);
                                  h(f);
                                  continue;
                                }
                              } else if (f.header.cmd == Cmd::kHeartbeat) {
                                FrameHeader answer = f.header;
                                answer.flags = kFlagResponse;
                                self->send_raw(encode_frame(answer, {}));
                                continue;
                              }
                              if (self->on_frame_) self->on_frame_(f);
                            }
                            if (used > 0) {
                              std::memmove(self->rbuf_.data(), self->rbuf_.data() + used, self->rlen_ - used);
                              self->rlen_ -= used;
                            }
                            if (!self->closed_) self->read_more();
                          });
}

void Client::fail(const asio::error_code& ec) {
  if (closed_) return;
  closed_ = true;
  asio::error_code ignored;
  socket_.close(ignored);
  auto pending = std::move(pending_);
  pending_.clear();
  if (on_close_) on_close_(ec);
}

void Client::close() {
  fail(asio::error::operation_aborted);
}

SyncClient::SyncClient() : client_(Client::create(io_)) {
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

bool SyncClient::connect(const std::string& host, std::uint16_t port) {
  std::promise<asio::error_code> done;
  asio::post(io_, [&] {
    client_->connect({asio::ip::make_address(host), port}, [&](const asio::error_code& ec) { done.set_value(ec); });
  });
  return !done.get_future().get();
}

std::optional<Frame> SyncClient::call_raw(Cmd cmd, std::string_view body, std::chrono::milliseconds timeout) {
  auto answer = std::make_shared<std::promise<std::optional<Frame>>>();
  auto result = answer->get_future();
  asio::post(io_, [this, cmd, b = std::string(body), answer] {
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

}  // namespace im
