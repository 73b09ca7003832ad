#pragma once
// The webhook events (PROTOCOL 7) as the outbox stores them: the JSON body
// that the webhook worker POSTs, with its id. Pure functions.

#include <cstdint>
#include <string>

#include "proto/im.pb.h"
#include "store/records.h"

namespace im::core {

// At most this many bytes of a message body ride in `preview_b64`.
inline constexpr std::size_t kPreviewBytes = 64;

// `report`: a client's REPORT.
store::OutboxEvent report_event(std::uint64_t id, std::int64_t time_ms, const std::string& uid,
                                std::uint8_t device_type, const v1::ReportReq& report);

// `offline_push`: no device of `uid` acknowledged `msg` in time; `muted`
// when the user muted that conversation (PROTOCOL 7, 8.1).
store::OutboxEvent offline_push_event(std::uint64_t id, std::int64_t time_ms, const std::string& uid,
                                      const v1::Message& msg, bool muted);

}  // namespace im::core
