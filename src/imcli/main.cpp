// imcli: a terminal client for imserver on the C++ SDK (im/chat_client.h).
//
//   imcli --server 127.0.0.1:9700 --uid alice --token T          interactive
//   imcli --uid alice --admin http://127.0.0.1:9702 --api-key K  (mints a token)
//   imcli ... send bob "hi"          one-shot commands for scripts:
//   imcli ... pull --json            send, pull, conversations, history,
//   imcli ... conversations --json   groups, create-group
//
// Interactive mode prints incoming messages as they arrive above a line
// editor (imcli/line_editor.h): /to bob, /group g1, /history, /groups, /create, /read,
// /recall, /list, /help, /quit; any other line is sent to the current
// conversation. docs/imcli.md has the whole reference.

#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "common/base64.h"
#include "im/chat_client.h"
#include "im/version.h"
#include "imcli/line_editor.h"

namespace {

using namespace im;
using nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kWait = 20s;

struct Options {
  std::string server = "127.0.0.1:9700";
  std::string transport = "tcp";
  std::string ca_file;
  bool insecure_tls = false;
  std::string uid;
  std::string token;
  std::string admin;
  std::string api_key;
  std::string device;  // "": desktop interactive, web for one-shot commands
  std::string state_dir;
  bool json = false;
};

// Text from the server (bodies, names, error messages) made safe for a
// terminal: control characters (C0, DEL, C1), which could move the cursor,
// rewrite earlier lines or change the terminal's settings, become U+FFFD,
// and a newline becomes "\u21b5" so that a body cannot fake a line of its
// own ("[alice] ..."). `keep_newlines` keeps ours.
bool is_utf8(const std::string& s);

std::string printable(std::string_view text, bool keep_newlines = false) {
  // Not UTF-8: every byte above 0x7F goes too (a lone 0x9B is an 8-bit CSI).
  const bool utf8 = is_utf8(std::string(text));
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c == '\n' && keep_newlines) {
      out += '\n';
    } else if (c == '\n') {
      out += "\u21b5";
    } else if (c < 0x20 || c == 0x7F || (!utf8 && c >= 0x80)) {
      out += "\ufffd";
    } else if (c == 0xC2 && i + 1 < text.size() && static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(text[i + 1]) <= 0x9F) {
      out += "\ufffd";  // a C1 control, encoded in UTF-8
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

[[noreturn]] void die(const std::string& what) {
  std::cerr << "imcli: " << printable(what) << "\n";
  std::exit(1);
}

// The client's last background error (a refused token, a server that cannot
// be reached), for a one-shot command that gets no answer.
// A certificate that does not verify ends a one-shot command at once: the
// retries of an interactive session would not change it.
std::mutex g_error_mutex;
std::string g_last_error;
bool g_certificate_refused = false;

template <class T>
T must(std::future<Result<T>> f, const std::string& what) {
  const auto until = std::chrono::steady_clock::now() + kWait;
  while (f.wait_for(100ms) != std::future_status::ready) {
    std::lock_guard lock(g_error_mutex);
    if (g_certificate_refused || std::chrono::steady_clock::now() >= until)
      die(what + ": no answer" + (g_last_error.empty() ? std::string() : " (" + g_last_error + ")"));
  }
  auto r = f.get();
  if (!r) die(fmt::format("{}: {} ({})", what, r.error().message, status_name(r.error().code)));
  return std::move(*r);
}

// POST {admin}/v1/tokens: a token for `uid` from the admin API.
std::string mint_token(const Options& o) {
  httplib::Client http(o.admin);
  http.set_connection_timeout(5, 0);
  http.set_read_timeout(10, 0);
  const httplib::Headers headers{{"Authorization", "Bearer " + o.api_key}};
  auto res = http.Post("/v1/tokens", headers, json{{"uid", o.uid}}.dump(), "application/json");
  // Thrown, not fatal: this runs on the client's thread, which reports it
  // and asks again at the next attempt.
  if (!res)
    throw std::runtime_error(
        fmt::format("cannot reach the admin API at {}: {}", o.admin, httplib::to_string(res.error())));
  if (res->status != 200) throw std::runtime_error(fmt::format("the admin API answered {}: {}", res->status, res->body));
  auto body = json::parse(res->body, nullptr, false);
  if (!body.is_object() || !body["token"].is_string()) throw std::runtime_error("the admin API answered without a token");
  return body["token"].get<std::string>();
}

v1::DeviceType device_of(const std::string& name) {
  if (name == "ios") return v1::IOS;
  if (name == "android") return v1::ANDROID;
  if (name == "web") return v1::WEB;
  if (name == "desktop") return v1::DESKTOP;
  die("--device must be ios, android, web or desktop");
}

ChatOptions chat_options(const Options& o) {
  ChatOptions c;
  const auto colon = o.server.rfind(':');
  if (colon == std::string::npos) die("--server must be HOST:PORT");
  c.host = o.server.substr(0, colon);
  if (c.host.size() > 2 && c.host.front() == '[' && c.host.back() == ']') c.host = c.host.substr(1, c.host.size() - 2);
  const int port = std::atoi(o.server.c_str() + colon + 1);
  if (port <= 0 || port > 65535) die("--server must be HOST:PORT");
  c.port = static_cast<std::uint16_t>(port);
  auto t = parse_transport(o.transport);
  if (!t) die("--transport must be tcp, ws, tls or wss");
  c.connection.transport = *t;
  if (uses_tls(*t)) {
    if (o.insecure_tls)
      c.connection.tls = make_insecure_client_tls_context();
    else
      c.connection.tls = make_client_tls_context(o.ca_file);  // empty: the system's CAs
  }
  c.uid = o.uid;
  c.device_type = device_of(o.device);
  c.client_version = std::string("imcli/") + kVersionString;
  // The token given, or one minted from the admin API (again when refused or expired).
  c.token = [o](TokenReason why) {
    if (!o.admin.empty() && (o.token.empty() || why != TokenReason::kLogin)) return mint_token(o);
    return o.token;
  };
  if (!o.state_dir.empty()) c.storage = std::make_shared<FileChatStorage>(o.state_dir);
  return c;
}

// ---------------------------------------------------------------- output

bool is_utf8(const std::string& s) {
  try {
    (void)json(s).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

std::string conv_type_name(v1::ConvType t) {
  switch (t) {
    case v1::C2C:
      return "c2c";
    case v1::GROUP:
      return "group";
    case v1::SYSTEM:
      return "system";
    default:
      return "unknown";
  }
}

json message_json(const v1::Message& m) {
  json j{{"inbox_seq", m.inbox_seq()},         {"msg_id", std::to_string(m.msg_id())},
         {"conv_type", conv_type_name(m.conv_type())}, {"from", m.from()},
         {"to", m.to()},                        {"conv_seq", m.conv_seq()},
         {"content_type", m.content_type()},   {"server_time_ms", m.server_time_ms()}};
  if (!m.client_msg_id().empty()) j["client_msg_id"] = m.client_msg_id();
  if (m.edit_version() > 0) j["edit_version"] = m.edit_version();
  if (is_utf8(m.body()))
    j["body"] = m.body();
  else
    j["body_base64"] = base64_encode(m.body());
  return j;
}

std::string message_line_raw(const v1::Message& m, const std::string& me);

// A line a person reads, safe for a terminal; "" for what is not worth a
// line (read marks, settings).
std::string message_line(const v1::Message& m, const std::string& me) {
  return printable(message_line_raw(m, me));
}

std::string message_line_raw(const v1::Message& m, const std::string& me) {
  const std::string where = m.conv_type() == v1::GROUP ? "#" + m.to() : (m.from() == me ? m.to() : m.from());
  const std::string who = m.from() == me ? "you" : m.from();
  switch (m.content_type()) {
    case 10001: {
      v1::GroupEvent e;
      if (!e.ParseFromString(m.body())) return fmt::format("[{}] (a group event)", where);
      std::string uids;
      for (const auto& u : e.uids()) uids += (uids.empty() ? "" : ", ") + u;
      return fmt::format("[{}] * {} {} {}", where, e.actor(), v1::GroupEventType_Name(e.type()), uids);
    }
    case 10003:
      return fmt::format("[{}] * {} recalled a message", where, who);
    case 10004: {
      v1::MessageEdit e;
      if (!e.ParseFromString(m.body())) return fmt::format("[{}] * {} edited a message", where, who);
      return fmt::format("[{}] * {} edited #{}: {}", where, who, e.target_conv_seq(), e.body());
    }
    case 10005:
      return fmt::format("[{}] (recalled)", where);
    default:
      break;
  }
  if (m.content_type() >= 10000) return "";
  return fmt::format("[{}] {} (#{}): {}", where, who, m.conv_seq(), is_utf8(m.body()) ? m.body() : "(binary)");
}

// ---------------------------------------------------------------- one-shot commands

int cmd_send(ChatClient& c, const Options& o, const std::string& to, const std::string& text, bool group) {
  SendOptions so;
  so.conv_type = group ? v1::GROUP : v1::C2C;
  const auto r = must(c.send(to, text, so), "send");
  if (o.json)
    std::cout << json{{"msg_id", std::to_string(r.msg_id)}, {"conv_seq", r.conv_seq}, {"inbox_seq", r.inbox_seq},
                      {"server_time_ms", r.server_time_ms}, {"duplicate", r.duplicate}}
                     .dump()
              << "\n";
  else
    std::cout << fmt::format("sent to {}: msg_id {} conv_seq {}\n", to, r.msg_id, r.conv_seq);
  return 0;
}

int cmd_pull(ChatClient& c, const Options& o, std::uint64_t after, std::uint32_t limit) {
  std::uint64_t seq = after;
  std::uint32_t printed = 0;
  for (;;) {
    v1::PullReq req;
    req.set_after_seq(seq);
    req.set_limit(std::min<std::uint32_t>(limit - printed, 200));
    const auto page = must(c.call<v1::PullResp>(Cmd::kPull, req), "pull");
    for (const auto& m : page.messages()) {
      seq = m.inbox_seq();
      ++printed;
      if (o.json) {
        std::cout << message_json(m).dump() << "\n";
      } else if (auto line = message_line(m, o.uid); !line.empty()) {
        std::cout << line << "\n";
      }
    }
    if (!page.has_more() || page.messages_size() == 0 || printed >= limit) break;
  }
  return 0;
}

int cmd_conversations(ChatClient& c, const Options& o) {
  json all = json::array();
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    const auto r = must(c.conversations(cursor, 500), "conversations");
    for (const auto& conv : r.conversations()) {
      json j{{"conv_type", conv_type_name(conv.conv_type())}, {"peer", conv.peer()},
             {"last_conv_seq", conv.last_conv_seq()},        {"read_seq", conv.read_seq()},
             {"unread_count", conv.unread_count()},          {"muted", conv.muted()},
             {"pinned", conv.pinned()},                      {"activity_ms", conv.activity_ms()}};
      if (conv.conv_type() == v1::C2C) j["peer_read_seq"] = conv.peer_read_seq();
      if (conv.has_last_message()) j["last_message"] = message_json(conv.last_message());
      all.push_back(std::move(j));
    }
    if (!r.has_more() || r.next_cursor().empty()) break;
    cursor = r.next_cursor();
  }
  if (o.json) {
    std::cout << all.dump() << "\n";
    return 0;
  }
  for (const auto& j : all)
    std::cout << printable(fmt::format("{:<6} {:<24} unread {:<4} last #{}", j["conv_type"].get<std::string>(),
                                       j["peer"].get<std::string>(), j["unread_count"].get<unsigned>(),
                                       j["last_conv_seq"].get<std::uint64_t>()))
              << "\n";
  return 0;
}

void print_history(ChatClient& c, const Options& o, v1::ConvType type, const std::string& peer, std::uint32_t limit,
                   std::ostream& out) {
  const auto h = must(c.history(type, peer, 0, limit), "history");
  for (const auto& m : h.messages()) {
    if (o.json)
      out << message_json(m).dump() << "\n";
    else if (auto line = message_line(m, o.uid); !line.empty())
      out << line << "\n";
  }
}

std::string groups_text(ChatClient& c, const Options& o) {
  const auto r = must(c.list_groups(), "groups");
  if (o.json) {
    json all = json::array();
    for (const auto& g : r.groups())
      all.push_back({{"gid", g.gid()}, {"name", g.name()}, {"owner", g.owner()}, {"member_count", g.member_count()}});
    return all.dump() + "\n";
  }
  std::string out;
  for (const auto& g : r.groups())
    out += printable(fmt::format("#{:<20} {:<24} {} members, owner {}", g.gid(), g.name(), g.member_count(),
                                 g.owner())) +
           "\n";
  return out;
}

v1::GroupResp create_group(ChatClient& c, const std::string& gid, const std::vector<std::string>& members,
                           const std::string& name) {
  v1::GroupCreateReq req;
  req.set_gid(gid);
  req.set_name(name.empty() ? gid : name);
  for (const auto& m : members) req.add_members(m);
  return must(c.create_group(req), "create group");
}

// ---------------------------------------------------------------- interactive mode

// Lines from the client's thread, printed by the main thread above the editor.
struct Printer {
  std::mutex mutex;
  std::deque<std::string> lines;
  int wake[2] = {-1, -1};

  void add(std::string line) {
    {
      std::lock_guard lock(mutex);
      lines.push_back(std::move(line));
    }
    const char b = 1;
    (void)!::write(wake[1], &b, 1);
  }
  std::deque<std::string> take() {
    char buf[256];
    while (::read(wake[0], buf, sizeof buf) > 0) {  // non-blocking: until empty
    }
    std::lock_guard lock(mutex);
    return std::exchange(lines, {});
  }
};

std::string conv_key(v1::ConvType type, const std::string& peer) {
  return fmt::format("{}:{}", static_cast<int>(type), peer);
}

struct Session {
  ChatClient* client = nullptr;
  Options* opt = nullptr;
  Printer* printer = nullptr;
  v1::ConvType type = v1::C2C;  // the current conversation (main thread only)
  std::string peer;
  bool quit = false;
  cli::LineEditor* editor = nullptr;  // a terminal; none for piped input
  // Your newest message per conversation, for /recall without a seq
  // (written on the client's thread).
  std::mutex own_mutex;
  std::unordered_map<std::string, std::uint64_t> own_last;

  std::uint64_t own_last_in(v1::ConvType t, const std::string& p) {
    std::lock_guard lock(own_mutex);
    auto it = own_last.find(conv_key(t, p));
    return it == own_last.end() ? 0 : it->second;
  }
};
Session* g_session = nullptr;

// A line above the one being typed (main thread only); made safe for the terminal.
void say(const std::string& raw) {
  const std::string text = printable(raw);
  if (g_session->editor) {
    g_session->editor->set_width(cli::terminal_columns(STDOUT_FILENO));
    std::fputs(g_session->editor->print_above(text).c_str(), stdout);
  } else {
    std::fputs(text.c_str(), stdout);
    if (text.empty() || text.back() != '\n') std::fputc('\n', stdout);
  }
  std::fflush(stdout);
}

std::string prompt() {
  Session& s = *g_session;
  if (s.peer.empty()) return s.opt->uid + "> ";
  return fmt::format("{} > {}{}> ", s.opt->uid, s.type == v1::GROUP ? "#" : "", s.peer);
}

std::vector<std::string> words_of(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> words;
  for (std::string w; in >> w;) words.push_back(w);
  return words;
}

// Runs one command of the interactive mode; errors are said, never fatal.
void command(const std::string& line) {
  Session& s = *g_session;
  ChatClient& c = *s.client;
  const auto words = words_of(line);
  if (words.empty()) return;
  const std::string& cmd = words[0];
  auto need_peer = [&] {
    if (s.peer.empty()) say("* no conversation: /to UID or /group GID first");
    return !s.peer.empty();
  };
  auto wait = [&](auto future, const std::string& what) -> decltype(future.get()) {
    if (future.wait_for(kWait) != std::future_status::ready)
      return make_error(StatusCode::kUnavailable, what + ": no answer yet (offline?)");
    return future.get();
  };
  if (cmd == "/quit" || cmd == "/exit") {
    s.quit = true;
  } else if (cmd == "/help") {
    say("/to UID | /group GID | /history [N] | /list | /groups | /create GID MEMBER... | /read | /recall [SEQ] | "
        "/quit; other lines are sent to the current conversation");
  } else if ((cmd == "/to" || cmd == "/group") && words.size() == 2) {
    s.type = cmd == "/to" ? v1::C2C : v1::GROUP;
    s.peer = words[1];
    say(fmt::format("* talking to {}{}", s.type == v1::GROUP ? "#" : "", s.peer));
  } else if (cmd == "/history") {
    if (!need_peer()) return;
    const std::uint32_t n = words.size() > 1 ? static_cast<std::uint32_t>(std::atoi(words[1].c_str())) : 20;
    auto r = wait(c.history(s.type, s.peer, 0, n == 0 ? 20 : n), "history");
    if (!r) return say("* " + r.error().message);
    for (const auto& m : r->messages())
      if (auto text = message_line(m, s.opt->uid); !text.empty()) say(text);
    if (r->messages_size() == 0) say("* no messages");
  } else if (cmd == "/list") {
    auto r = wait(c.conversations("", 100), "conversations");
    if (!r) return say("* " + r.error().message);
    for (const auto& conv : r->conversations())
      say(fmt::format("  {}{} ({} unread)", conv.conv_type() == v1::GROUP ? "#" : "", conv.peer(),
                      conv.unread_count()));
    if (r->conversations_size() == 0) say("* no conversations");
  } else if (cmd == "/groups") {
    auto r = wait(c.list_groups(), "groups");
    if (!r) return say("* " + r.error().message);
    for (const auto& g : r->groups())
      say(fmt::format("  #{} {} ({} members)", g.gid(), g.name(), g.member_count()));
    if (r->groups_size() == 0) say("* no groups");
  } else if (cmd == "/create" && words.size() >= 2) {
    v1::GroupCreateReq req;
    req.set_gid(words[1]);
    req.set_name(words[1]);
    for (std::size_t i = 2; i < words.size(); ++i) req.add_members(words[i]);
    auto r = wait(c.create_group(req), "create");
    if (!r) return say("* " + r.error().message);
    s.type = v1::GROUP;
    s.peer = r->group().gid();
    say(fmt::format("* created #{} with {} members; talking to it", s.peer, r->group().member_count()));
  } else if (cmd == "/read") {
    if (!need_peer()) return;
    auto r = wait(c.mark_read(s.type, s.peer), "read");
    if (!r) return say("* " + r.error().message);
    say(fmt::format("* read up to #{}", r->read_seq()));
  } else if (cmd == "/recall") {
    if (!need_peer()) return;
    const std::uint64_t seq =
        words.size() > 1 ? std::strtoull(words[1].c_str(), nullptr, 10) : s.own_last_in(s.type, s.peer);
    if (seq == 0) return say("* nothing to recall: /recall SEQ");
    auto r = wait(c.recall(s.type, s.peer, seq), "recall");
    if (!r) return say("* " + r.error().message);
    say(fmt::format("* recalled #{}", seq));
  } else if (cmd[0] == '/') {
    say("* unknown command (or its arguments): " + cmd + "; /help lists them");
  } else {
    if (!need_peer()) return;
    SendOptions so;
    so.conv_type = s.type;
    // Sent through the outbox: answered when stored, also after a reconnect.
    Printer* printer = s.printer;
    c.send_async(s.peer, line, so, [printer](Result<SendResult> r) {
      if (!r) printer->add(fmt::format("* not sent: {} ({})", r.error().message, status_name(r.error().code)));
    });
  }
}

int interactive(ChatClient& c, Options& o) {
  Printer printer;
  if (::pipe2(printer.wake, O_NONBLOCK | O_CLOEXEC) != 0) die("pipe failed");
  Session s;
  s.client = &c;
  s.opt = &o;
  s.printer = &printer;
  // The callbacks below point at `printer` and `s`: the client stops before
  // they go, however this function returns.
  struct CloseFirst {
    ChatClient& client;
    ~CloseFirst() { client.close(); }
  } close_first{c};
  g_session = &s;
  c.on_message([&printer, &o, &s](const v1::Message& m) {
    if (m.from() == o.uid && m.content_type() < 10000) {
      std::lock_guard lock(s.own_mutex);
      s.own_last[conv_key(m.conv_type(), m.to())] = m.conv_seq();
    }
    if (auto line = message_line(m, o.uid); !line.empty()) printer.add(line);
  });
  c.on_state([&printer](ChatState st) { printer.add(fmt::format("* {}", chat_state_name(st))); });
  c.on_kicked([&printer](const KickInfo& k) {
    printer.add(fmt::format("* kicked out: {} ({}){}", v1::KickReason_Name(k.reason), k.message,
                            k.reconnects ? ", reconnecting" : ""));
  });
  c.on_error([&printer](const Error& e) { printer.add(fmt::format("* {}: {}", status_name(e.code), e.message)); });
  c.on_server_push([&printer](const v1::ServerPush& p) {
    printer.add(fmt::format("* server push [{}]: {}", p.topic(), is_utf8(p.payload()) ? p.payload() : "(binary)"));
  });
  // Not waited for: the state lines say how the login goes, and what is
  // typed meanwhile waits for it (sends in the outbox).
  (void)c.connect();
  say(fmt::format("* {} on {}; /help for commands", o.uid, o.server));

  if (!::isatty(STDIN_FILENO)) {
    // Input from a pipe or a file: one command per line, no editor.
    std::string line;
    while (!s.quit && std::getline(std::cin, line)) {
      for (auto& l : printer.take()) say(l);
      command(line);
    }
    std::this_thread::sleep_for(300ms);  // the answers to the last lines
    for (auto& l : printer.take()) say(l);
    return 0;
  }
  cli::LineEditor editor(prompt());
  cli::RawTerminal raw(STDIN_FILENO);
  s.editor = &editor;
  editor.set_width(cli::terminal_columns(STDOUT_FILENO));
  std::fputs(editor.render().c_str(), stdout);
  std::fflush(stdout);
  while (!s.quit && !editor.eof()) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {printer.wake[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents & POLLIN)
      for (auto& l : printer.take()) say(l);
    if (fds[0].revents & (POLLIN | POLLHUP)) {
      char buf[256];
      const ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n && !s.quit; ++i) {
        auto line = editor.feed(buf[i]);
        if (!line) continue;
        std::fputs(("\r\x1B[K" + prompt() + *line + "\r\n").c_str(), stdout);  // the line stays on the screen
        command(*line);
        editor.set_prompt(prompt());  // the conversation may have changed
      }
      editor.set_width(cli::terminal_columns(STDOUT_FILENO));  // it may have been resized
      std::fputs(editor.render().c_str(), stdout);
      std::fflush(stdout);
    }
  }
  s.editor = nullptr;
  std::fputs("\n", stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"imcli: a terminal client for imserver"};
  app.fallthrough();  // the global options also after the command: imcli send bob hi --json
  app.set_version_flag("-V,--version", std::string("imcli ") + kVersionString);
  app.add_option("--server", o.server, "HOST:PORT of the listener (server.listen; server.ws_listen for ws, wss)")
      ->capture_default_str();
  app.add_option("--transport", o.transport, "tcp, ws, tls or wss")->capture_default_str();
  app.add_option("--ca", o.ca_file,
                 "CA certificates (PEM) that sign the server's certificate (tls, wss; default: the system's)");
  app.add_flag("--insecure-tls", o.insecure_tls, "accept any certificate (tests on loopback only)");
  app.add_option("--uid", o.uid, "the user to log in as")->required();
  app.add_option("--token", o.token, "a JWT for --uid (from your backend)")->envname("IM_TOKEN");
  app.add_option("--admin", o.admin, "the admin API's URL, to mint a token (http://127.0.0.1:9702)");
  app.add_option("--api-key", o.api_key, "the admin API key (admin.api_key)")->envname("IM_ADMIN_KEY");
  app.add_option("--device", o.device,
                 "ios, android, web or desktop: one session per user and device type (default: desktop "
                 "interactive, web for one-shot commands, so a script does not sign your imcli out)");
  app.add_option("--state-dir", o.state_dir, "keep the resync point and unsent messages here");
  app.add_flag("--json", o.json, "JSON output (one-shot commands)");

  std::string to, text, peer, gid, name;
  bool group = false;
  std::uint64_t after = 0;
  std::uint32_t limit = 1000;
  std::vector<std::string> members;
  auto* send = app.add_subcommand("send", "send one message and print its ids");
  send->add_option("to", to, "the recipient (a uid, or a gid with --group)")->required();
  send->add_option("text", text, "the message")->required();
  send->add_flag("--group", group, "to a group");
  auto* pull = app.add_subcommand("pull", "print the inbox from a seq (one JSON object a line with --json)");
  pull->add_option("--after", after, "the inbox seq to start after")->capture_default_str();
  pull->add_option("--limit", limit, "at most this many")->capture_default_str();
  auto* conversations = app.add_subcommand("conversations", "print the conversation list");
  auto* history = app.add_subcommand("history", "print a conversation's newest messages");
  history->add_option("peer", peer, "a uid, or a gid with --group")->required();
  history->add_flag("--group", group, "a group");
  history->add_option("--limit", limit, "at most this many (500)");
  auto* groups = app.add_subcommand("groups", "print your groups");
  auto* create = app.add_subcommand("create-group", "create a group with members");
  create->add_option("gid", gid, "the group id")->required();
  create->add_option("members", members, "its members besides you");
  create->add_option("--name", name, "its name (default: the gid)");
  CLI11_PARSE(app, argc, argv);
  if (o.token.empty() && o.admin.empty()) die("--token or --admin URL (with --api-key) is required");
  if (!o.admin.empty() && o.api_key.empty()) die("--admin needs --api-key (or IM_ADMIN_KEY)");

  const bool one_shot = send->parsed() || pull->parsed() || conversations->parsed() || history->parsed() ||
                        groups->parsed() || create->parsed();
  if (o.device.empty()) o.device = one_shot ? "web" : "desktop";
  ChatOptions copts = chat_options(o);
  copts.resync = !one_shot;  // a one-shot command neither pulls nor acknowledges the inbox
  ChatClient client(copts);
  if (one_shot)
    client.on_error([](const Error& e) {
      std::lock_guard lock(g_error_mutex);
      g_last_error = fmt::format("{}: {}", status_name(e.code), e.message);
      if (e.message.find("certificate verify failed") != std::string::npos) g_certificate_refused = true;
    });
  int rc = 0;
  if (send->parsed()) {
    rc = cmd_send(client, o, to, text, group);
  } else if (pull->parsed()) {
    rc = cmd_pull(client, o, after, std::max<std::uint32_t>(limit, 1));
  } else if (conversations->parsed()) {
    rc = cmd_conversations(client, o);
  } else if (history->parsed()) {
    print_history(client, o, group ? v1::GROUP : v1::C2C, peer, std::min<std::uint32_t>(limit, 500), std::cout);
  } else if (groups->parsed()) {
    std::cout << groups_text(client, o);
  } else if (create->parsed()) {
    const auto g = create_group(client, gid, members, name);
    std::cout << (o.json ? json{{"gid", g.group().gid()}, {"member_count", g.group().member_count()}}.dump()
                         : printable(fmt::format("created #{} ({} members)", g.group().gid(), g.group().member_count())))
              << "\n";
  } else {
    rc = interactive(client, o);
  }
  client.close();
  return rc;
}
