// An echo bot: logs in as a user and answers every text message sent to it
// ("echo: ..."), one-to-one or in its groups. The C++ SDK does the rest:
// reconnects, resync after a cut, each message answered once.
//
//   echo_bot HOST PORT UID TOKEN [STATE_DIR]   (stops on SIGINT or SIGTERM)
//
// STATE_DIR (else $ECHO_BOT_STATE, else ./echo-bot-state) keeps the bot's
// resync point and its unanswered sends (a FileChatStorage): a restarted bot
// goes on after the last message it answered instead of answering the whole
// inbox again. One bot process per state dir.
//
// The token is fixed: when it expires the server ends the session, the same
// token is refused and the bot stops. A real bot's token provider asks its
// backend for a fresh one (examples/backend.py mints tokens).

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "im/chat_client.h"

namespace {
std::atomic<bool> stop{false};    // a signal
std::atomic<bool> closed{false};  // the client gave up (token refused, LOGIN_ELSEWHERE)
}

int main(int argc, char** argv) {
  if (argc != 5 && argc != 6) {
    std::cerr << "usage: echo_bot HOST PORT UID TOKEN [STATE_DIR]\n";
    return 2;
  }
  im::ChatOptions options;
  options.host = argv[1];
  options.port = static_cast<std::uint16_t>(std::atoi(argv[2]));
  options.uid = argv[3];
  const std::string token = argv[4];
  options.token = [token](im::TokenReason) { return token; };  // fixed: see above
  options.device_id = "echo-bot";
  const char* env_state = std::getenv("ECHO_BOT_STATE");
  const std::string state_dir = argc == 6                              ? argv[5]
                                : env_state != nullptr && *env_state ? env_state
                                                                     : "echo-bot-state";
  options.storage = std::make_shared<im::FileChatStorage>(state_dir);

  im::ChatClient bot(options);
  // Runs on the bot's thread, once per inbox message, in order.
  bot.on_message([&bot, &options](const im::v1::Message& m) {
    // Events, marks and its own messages are skipped. Not other bots': two
    // echo bots in one group answer each other's echoes forever. A real bot
    // answers only what is meant for it (a command, a mention).
    if (m.content_type() != 0 || m.from() == options.uid) return;
    im::SendOptions reply;
    reply.conv_type = m.conv_type();
    // A client_msg_id derived from the message. The resync point is saved
    // just after the messages are given, so a bot that crashes in between
    // sees some again: its answer is then a retry, which the server
    // deduplicates within storage.dedupe_window_s (24 hours by default).
    reply.client_msg_id = "echo-" + std::to_string(m.msg_id());
    const std::string to = m.conv_type() == im::v1::GROUP ? m.to() : m.from();
    bot.send_async(to, "echo: " + m.body(), reply, [](im::Result<im::SendResult> r) {
      if (!r) std::cerr << "echo_bot: not answered: " << r.error().message << "\n";
    });
  });
  bot.on_state([](im::ChatState s) {
    std::cout << "echo_bot: " << im::chat_state_name(s) << std::endl;
    if (s == im::ChatState::kClosed) closed = true;
  });
  bot.on_error([](const im::Error& e) { std::cerr << "echo_bot: " << e.message << "\n"; });

  std::signal(SIGINT, [](int) { stop = true; });
  std::signal(SIGTERM, [](int) { stop = true; });
  auto connected = bot.connect();
  while (!stop && !closed) {
    if (connected.valid() && connected.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready) {
      if (auto r = connected.get(); !r) {
        std::cerr << "echo_bot: " << r.error().message << "\n";
        return 1;
      }
    } else if (!connected.valid()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  bot.close();  // saves the state
  return stop ? 0 : 1;
}
