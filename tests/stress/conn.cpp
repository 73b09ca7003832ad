#include "conn.h"

#include <algorithm>
#include <functional>
#include <thread>

#include <asio/ip/address.hpp>
#include <asio/socket_base.hpp>

namespace im::stress {

Conn::Conn() = default;

Conn::~Conn() {
  close(true);
}

void Conn::run_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return;
    if (io_.stopped()) io_.restart();
    // One handler at a time, so `done` is looked at after each.
    if (io_.run_one_for(deadline - now) == 0 && io_.stopped()) {
      // No I/O left (the connection is gone): wait out the time.
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(deadline - now, 5ms));
    }
  }
}

bool Conn::connect(std::uint16_t port, std::chrono::milliseconds timeout) {
  close(true);
  closed_ = false;
  started_.clear();
  client_ = Client::create(io_);
  const std::uint64_t generation = ++generation_;
  client_->on_frame([this, generation](Frame& f) {
    if (generation == generation_) started_.push_back(std::move(f));
  });
  client_->on_close([this, generation](const asio::error_code&) {
    if (generation == generation_) closed_ = true;
  });
  auto result = std::make_shared<std::optional<asio::error_code>>();
  client_->connect({asio::ip::make_address("127.0.0.1"), port}, [result](const asio::error_code& ec) { *result = ec; });
  run_until([&] { return result->has_value(); }, timeout);
  if (!result->has_value() || result->value()) {
    close(true);
    return false;
  }
  return true;
}

std::vector<std::optional<Frame>> Conn::calls(const std::vector<std::pair<Cmd, std::string>>& requests,
                                              std::chrono::milliseconds timeout) {
  struct Batch {
    std::vector<std::optional<Frame>> answers;
    std::size_t answered = 0;
  };
  // Shared with the handlers: an answer that comes after the timeout lands
  // here harmlessly.
  auto batch = std::make_shared<Batch>();
  batch->answers.resize(requests.size());
  if (!open()) return std::move(batch->answers);
  for (std::size_t i = 0; i < requests.size(); ++i) {
    client_->request(requests[i].first, requests[i].second, [batch, i](Frame& f) {
      batch->answers[i] = std::move(f);
      ++batch->answered;
    });
  }
  run_until([&] { return batch->answered == requests.size() || closed_; }, timeout);
  return std::move(batch->answers);
}

std::optional<Frame> Conn::call(Cmd cmd, const google::protobuf::MessageLite& body, std::chrono::milliseconds timeout) {
  return std::move(calls({{cmd, body.SerializeAsString()}}, timeout)[0]);
}

std::optional<Frame> Conn::call_empty(Cmd cmd, std::chrono::milliseconds timeout) {
  return std::move(calls({{cmd, std::string()}}, timeout)[0]);
}

void Conn::notify(Cmd cmd, const google::protobuf::MessageLite& body) {
  if (open()) client_->notify(cmd, &body);
}

void Conn::pump(std::chrono::milliseconds d) {
  if (!client_) return;
  run_until([] { return false; }, d);
}

std::vector<Frame> Conn::take_started() {
  return std::exchange(started_, {});
}

void Conn::close(bool abort) {
  if (!client_) return;
  if (abort && client_->socket().is_open()) {
    asio::error_code ignored;
    client_->socket().set_option(asio::socket_base::linger(true, 0), ignored);
  }
  client_->close();
  io_.restart();
  io_.poll();  // lets the handlers of the close run
  client_.reset();
  closed_ = true;
}

std::optional<v1::LoginResp> login(Conn& c, const std::string& uid, const std::string& token, v1::DeviceType device,
                                   const std::string& device_id, std::string& why) {
  v1::LoginReq req;
  req.set_uid(uid);
  req.set_token(token);
  req.set_device_type(device);
  req.set_device_id(device_id);
  auto answer = c.call(Cmd::kLogin, req);
  v1::LoginResp resp;
  if (!answer || !answer->ok() || !answer->parse(resp)) {
    why = describe(answer);
    return std::nullopt;
  }
  return resp;
}

std::string describe(const std::optional<Frame>& answer) {
  if (!answer) return "no answer";
  if (answer->ok()) return "OK";
  std::string text(status_name(answer->status()));
  const std::string message = answer->error_message();
  if (!message.empty()) text += " (" + message + ")";
  return text;
}

}  // namespace im::stress
