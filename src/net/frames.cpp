#include "net/frames.h"

#include "proto/im.pb.h"

namespace im::net {

SharedFrame make_frame(FrameHeader header, const google::protobuf::MessageLite* body) {
  const std::size_t body_len = body ? body->ByteSizeLong() : 0;
  header.body_len = static_cast<std::uint32_t>(body_len);
  auto out = std::make_shared<std::string>(kHeaderSize + body_len, '\0');
  encode_header(header, std::span<std::byte, kHeaderSize>(reinterpret_cast<std::byte*>(out->data()), kHeaderSize));
  if (body) body->SerializeWithCachedSizesToArray(reinterpret_cast<std::uint8_t*>(out->data() + kHeaderSize));
  return out;
}

SharedFrame make_response(const FrameHeader& request, StatusCode status, const google::protobuf::MessageLite* body) {
  FrameHeader h;
  h.flags = kFlagResponse;
  h.cmd = request.cmd;
  h.status = status;
  h.seq = request.seq;
  return make_frame(h, body);
}

SharedFrame make_error_response(const FrameHeader& request, StatusCode status, std::string_view message,
                                std::uint32_t retry_after_ms) {
  v1::Error error;
  error.set_message(std::string(message));
  error.set_retry_after_ms(retry_after_ms);
  return make_response(request, status, &error);
}

SharedFrame make_kickout(std::uint32_t seq, int reason, std::string_view message, std::string_view by_device_id,
                         std::uint32_t reconnect_after_ms) {
  v1::Kickout kickout;
  kickout.set_reason(static_cast<v1::KickReason>(reason));
  kickout.set_by_device_id(std::string(by_device_id));
  kickout.set_message(std::string(message));
  kickout.set_reconnect_after_ms(reconnect_after_ms);
  FrameHeader h;
  h.cmd = Cmd::kKickout;
  h.seq = seq;
  return make_frame(h, &kickout);
}

SharedFrame make_error_frame(StatusCode status, std::string_view message, std::uint32_t retry_after_ms) {
  v1::Error error;
  error.set_message(std::string(message));
  error.set_retry_after_ms(retry_after_ms);
  FrameHeader h;
  h.cmd = Cmd::kError;
  h.status = status;
  h.seq = 0;
  return make_frame(h, &error);
}

}  // namespace im::net
