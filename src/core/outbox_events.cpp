#include "core/outbox_events.h"

#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "core/names.h"

namespace im::core {

store::OutboxEvent report_event(std::uint64_t id, std::int64_t time_ms, const std::string& uid,
                                std::uint8_t device_type, const v1::ReportReq& report) {
  nlohmann::json event = {
      {"id", std::to_string(id)},
      {"event", "report"},
      {"time_ms", time_ms},
      {"uid", uid},
      {"device_type", device_type_name(device_type)},
      {"report_id", report.report_id()},
      {"topic", report.topic()},
      {"payload", base64_encode(report.payload())},
  };
  return {id, event.dump()};
}

store::OutboxEvent offline_push_event(std::uint64_t id, std::int64_t time_ms, const std::string& uid,
                                      const v1::Message& msg, bool muted) {
  const std::string& body = msg.body();
  nlohmann::json event = {
      {"id", std::to_string(id)},
      {"event", "offline_push"},
      {"time_ms", time_ms},
      {"uid", uid},
      {"msg_id", std::to_string(msg.msg_id())},
      {"conv_type", conv_type_name(msg.conv_type())},
      {"from", msg.from()},
      {"to", msg.to()},
      {"content_type", msg.content_type()},
      {"preview_b64", base64_encode(body.size() > kPreviewBytes ? body.substr(0, kPreviewBytes) : body)},
      {"muted", muted},
  };
  return {id, event.dump()};
}

}  // namespace im::core
