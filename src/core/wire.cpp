#include "core/wire.h"

#include <utility>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "im/frame_codec.h"
#include "proto/im.pb.h"

namespace im::core::wire {
namespace {

using google::protobuf::internal::WireFormatLite;

constexpr int kMessagesField = v1::PullResp::kMessagesFieldNumber;
static_assert(kMessagesField == static_cast<int>(v1::HistoryResp::kMessagesFieldNumber) &&
                  kMessagesField == static_cast<int>(v1::MessagePush::kMessagesFieldNumber),
              "the three bodies share the messages field number");

void append_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7F) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

void append_tag(std::string& out, int field, WireFormatLite::WireType type) {
  append_varint(out, WireFormatLite::MakeTag(field, type));
}

// proto3: a zero value is not written.
void append_varint_field(std::string& out, int field, std::uint64_t v) {
  if (v == 0) return;
  append_tag(out, field, WireFormatLite::WIRETYPE_VARINT);
  append_varint(out, v);
}

std::size_t row_cost(std::size_t row_bytes) {
  return WireFormatLite::TagSize(kMessagesField, WireFormatLite::TYPE_BYTES) +
         google::protobuf::io::CodedOutputStream::VarintSize64(row_bytes) + row_bytes;
}

}  // namespace

std::size_t max_row_bytes(std::size_t budget) {
  const std::size_t overhead = row_cost(budget) - budget;  // tag + the largest length prefix
  return budget > overhead ? budget - overhead : 0;
}

bool MessageRows::fits(std::string_view row) const {
  return bytes_.size() + row_cost(row.size()) <= budget_;
}

void MessageRows::add(std::string_view row) {
  append_tag(bytes_, kMessagesField, WireFormatLite::WIRETYPE_LENGTH_DELIMITED);
  append_varint(bytes_, row.size());
  bytes_.append(row);
  ++count_;
}

std::string MessageRows::take() {
  count_ = 0;
  return std::exchange(bytes_, {});
}

std::string pull_resp(MessageRows rows, bool has_more, std::uint64_t inbox_max_seq, std::uint64_t oldest_seq) {
  std::string body = rows.take();
  append_varint_field(body, v1::PullResp::kHasMoreFieldNumber, has_more ? 1 : 0);
  append_varint_field(body, v1::PullResp::kInboxMaxSeqFieldNumber, inbox_max_seq);
  append_varint_field(body, v1::PullResp::kOldestSeqFieldNumber, oldest_seq);
  return body;
}

std::string history_resp(MessageRows rows, bool has_more) {
  std::string body = rows.take();
  append_varint_field(body, v1::HistoryResp::kHasMoreFieldNumber, has_more ? 1 : 0);
  return body;
}

net::SharedFrame response(const FrameHeader& request, std::string body) {
  FrameHeader h;
  h.flags = kFlagResponse;
  h.cmd = request.cmd;
  h.seq = request.seq;
  return std::make_shared<const std::string>(encode_frame(h, body));
}

std::vector<net::SharedFrame> push_frames(const std::vector<std::string_view>& rows, std::size_t budget,
                                          const std::function<std::uint32_t()>& next_seq) {
  std::vector<net::SharedFrame> frames;
  MessageRows body(budget);
  auto flush = [&] {
    if (body.empty()) return;
    FrameHeader h;
    h.cmd = Cmd::kPush;
    h.seq = next_seq();
    frames.push_back(std::make_shared<const std::string>(encode_frame(h, body.take())));
  };
  for (std::string_view row : rows) {
    if (!body.empty() && !body.fits(row)) flush();
    body.add(row);  // a single row always fits: max_message_bytes is below the frame limit
  }
  flush();
  return frames;
}

}  // namespace im::core::wire
