#pragma once
// Building encoded frames from protobuf messages. A frame is encoded once
// into a SharedFrame and shared by every connection it is sent to.

#include <memory>
#include <string>
#include <string_view>

#include <google/protobuf/message_lite.h>

#include "im/frame_codec.h"
#include "im/protocol.h"

namespace im::net {

using SharedFrame = std::shared_ptr<const std::string>;

// header (body_len filled in) + the serialized `body` (none when null).
SharedFrame make_frame(FrameHeader header, const google::protobuf::MessageLite* body);

// The answer to `request`: same cmd and seq, RESPONSE set, `status`.
SharedFrame make_response(const FrameHeader& request, StatusCode status, const google::protobuf::MessageLite* body);

// A non-OK answer to `request` with an Error body.
SharedFrame make_error_response(const FrameHeader& request, StatusCode status, std::string_view message,
                                std::uint32_t retry_after_ms = 0);

// A KICKOUT (server-started, numbered `seq`); `reason` is a v1::KickReason.
SharedFrame make_kickout(std::uint32_t seq, int reason, std::string_view message, std::string_view by_device_id = {},
                         std::uint32_t reconnect_after_ms = 0);

// The ERROR frame (cmd 0x00FF, seq 0) for a framing violation or a refusal.
SharedFrame make_error_frame(StatusCode status, std::string_view message, std::uint32_t retry_after_ms = 0);

}  // namespace im::net
