#include "store/keys.h"

namespace im::store {

void append_u64(std::string& out, std::uint64_t v) {
  for (int shift = 56; shift >= 0; shift -= 8) out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

std::uint64_t read_u64(std::string_view b) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8 && i < b.size(); ++i) v = (v << 8) | static_cast<unsigned char>(b[i]);
  return v;
}

std::string user_prefix(std::string_view uid) {
  std::string k(uid);
  k.push_back('\0');
  return k;
}

void assign_history_key(std::string& out, std::string_view conv, std::uint64_t conv_seq) {
  out.assign(conv);
  out.push_back('\0');
  append_u64(out, conv_seq);
}

std::string inbox_key(std::string_view uid, std::uint64_t seq) {
  std::string k;
  assign_history_key(k, uid, seq);  // the same layout: id 0x00 seq
  return k;
}

std::string history_key(std::string_view conv, std::uint64_t conv_seq) {
  return inbox_key(conv, conv_seq);
}

std::string dedupe_key(std::string_view uid, std::string_view client_msg_id) {
  std::string k = user_prefix(uid);
  k.append(client_msg_id);
  return k;
}

std::string cursor_key(std::string_view uid, std::uint8_t device_type, std::string_view device_id) {
  std::string k = user_prefix(uid);
  k.push_back(static_cast<char>(device_type));
  k.append(device_id);
  return k;
}

std::string conv_key(std::string_view uid, std::string_view conv) {
  std::string k = user_prefix(uid);
  k.append(conv);
  return k;
}

std::string conv_settings_key(std::string_view uid, std::string_view conv) {
  std::string k = user_prefix(uid);
  k.push_back('\0');
  k.append(conv);
  return k;
}

std::string conv_states_begin(std::string_view uid) {
  std::string k = user_prefix(uid);
  k.push_back('\x01');
  return k;
}

std::string deleted_key(std::string_view uid, std::string_view conv, std::uint64_t conv_seq) {
  std::string k = conv_key(uid, conv);
  k.push_back('\0');
  append_u64(k, conv_seq);
  return k;
}

std::string member_key(std::string_view gid, std::string_view uid) {
  std::string k = user_prefix(gid);
  k.append(uid);
  return k;
}

std::string fanout_key(const FanoutKey& key) {
  std::string k = history_key(key.conv, key.conv_seq);
  k.append(key.recipient);
  return k;
}

std::string progress_key(const FanoutKey& key, std::uint32_t chain) {
  std::string k = history_key(key.conv, key.conv_seq);
  k.push_back('\0');  // a recipient (an id) never starts with 0x00
  for (int shift = 24; shift >= 0; shift -= 8) k.push_back(static_cast<char>((chain >> shift) & 0xFF));
  return k;
}

std::optional<ParsedFanoutKey> parse_fanout_key(std::string_view key) {
  const auto sep = key.find('\0');
  if (sep == std::string_view::npos || sep == 0 || key.size() < sep + 9) return std::nullopt;
  ParsedFanoutKey out;
  out.key.conv = std::string(key.substr(0, sep));
  out.key.conv_seq = read_u64(key.substr(sep + 1, 8));
  const std::string_view rest = key.substr(sep + 9);
  if (rest.empty()) return out;  // a group record
  if (rest[0] == '\0') {
    if (rest.size() != 5) return std::nullopt;
    std::uint32_t chain = 0;
    for (std::size_t i = 1; i < 5; ++i) chain = (chain << 8) | static_cast<unsigned char>(rest[i]);
    out.chain = chain;
    return out;
  }
  out.key.recipient = std::string(rest);
  return out;
}

std::string outbox_key(std::uint8_t queue, std::uint64_t id) {
  std::string k(1, static_cast<char>(queue));
  append_u64(k, id);
  return k;
}

std::string outbox_failing_key(std::uint8_t queue, std::uint64_t id) {
  return "webhook_failing:" + outbox_key(queue, id);
}

std::uint64_t seq_of(std::string_view key) {
  return key.size() < 8 ? 0 : read_u64(key.substr(key.size() - 8));
}

std::string token_revocation_key(std::string_view uid) {
  std::string k = "token_revoked:";
  k.append(uid);
  return k;
}

std::string large_group_key(std::string_view gid) {
  std::string k = "large_group:";
  k.append(gid);
  return k;
}

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& c = reinterpret_cast<unsigned char&>(end.back());
    if (c != 0xFF) {
      ++c;
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\xFF');  // unreachable for our keys, which never are all 0xFF
}

std::string c2c_conv(std::string_view a, std::string_view b) {
  std::string k = "c:";
  k.append(a < b ? a : b);
  k.push_back(':');
  k.append(a < b ? b : a);
  return k;
}

std::optional<std::pair<std::string_view, std::string_view>> c2c_users(std::string_view conv) {
  if (!conv.starts_with("c:")) return std::nullopt;
  const std::string_view pair = conv.substr(2);
  const auto colon = pair.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return std::pair{pair.substr(0, colon), pair.substr(colon + 1)};
}

std::string group_conv(std::string_view gid) {
  return "g:" + std::string(gid);
}

std::string system_conv(std::string_view uid) {
  return "s:" + std::string(uid);
}

}  // namespace im::store
