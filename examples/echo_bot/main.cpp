// An echo bot: logs in as a user and answers every text message sent to it
// ("echo: ..."), one-to-one or in its groups. The C++ SDK does the rest:
// reconnects, resync after a cut, each message answered once.
//
//   echo_bot HOST PORT UID TOKEN       (stops on SIGINT or SIGTERM)

#include <csignal>
#include <cstdlib>
#include <iostream>
#include <chrono>
#include <string>
#include <thread>

#include "im/chat_client.h"

namespace {
volatile std::sig_atomic_t stop = 0;
}

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: echo_bot HOST PORT UID TOKEN\n";
    return 2;
  }
  im::ChatOptions options;
  options.host = argv[1];
  options.port = static_cast<std::uint16_t>(std::atoi(argv[2]));
  options.uid = argv[3];
  const std::string token = argv[4];
  options.token = [token](im::TokenReason) { return token; };
  options.device_id = "echo-bot";

  im::ChatClient bot(options);
  // Runs on the bot's thread, once per inbox message, in order.
  bot.on_message([&bot, &options](const im::v1::Message& m) {
    if (m.content_type() != 0 || m.from() == options.uid) return;  // events, marks, its own
    im::SendOptions reply;
    reply.conv_type = m.conv_type();
    // A client_msg_id derived from the message: a bot restarted after a
    // crash that answers again is deduplicated by the server.
    reply.client_msg_id = "echo-" + std::to_string(m.msg_id());
    const std::string to = m.conv_type() == im::v1::GROUP ? m.to() : m.from();
    bot.send_async(to, "echo: " + m.body(), reply, [](im::Result<im::SendResult> r) {
      if (!r) std::cerr << "echo_bot: not answered: " << r.error().message << "\n";
    });
  });
  bot.on_state([](im::ChatState s) { std::cout << "echo_bot: " << im::chat_state_name(s) << std::endl; });
  bot.on_error([](const im::Error& e) { std::cerr << "echo_bot: " << e.message << "\n"; });

  std::signal(SIGINT, [](int) { stop = 1; });
  std::signal(SIGTERM, [](int) { stop = 1; });
  auto connected = bot.connect();
  while (!stop) {
    if (connected.valid() && connected.wait_for(std::chrono::milliseconds(200)) == std::future_status::ready) {
      if (auto r = connected.get(); !r) {
        std::cerr << "echo_bot: " << r.error().message << "\n";
        return 1;
      }
    } else if (!connected.valid()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  bot.close();
  return 0;
}
