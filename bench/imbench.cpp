// imbench: the load generator of BENCHMARKS.md, speaking the protocol
// through the client library (include/im/client.h). Many connections per
// thread on Asio, several frames per syscall, no thread per connection.
// Every scenario prints a table and one JSON line; server RSS and CPU come
// from /proc/<server pid>, the generator's own CPU from getrusage, so a
// saturated generator shows.
//
//   imbench --scenario w2 --port 9700 --server-pid 1234 --secret ... --pairs 100
//
// Loopback only: --host must be a 127.0.0.0/8 or ::1 address.
//
// --transport tcp|ws|tls|wss picks how every client of W1-W5 speaks (W6
// restarts the server and times a tcp LOGIN only): --port is then the port
// of that listener (`server.listen` for tcp and tls, `server.ws_listen` for
// ws and wss). tls and wss verify the server's certificate when --ca-file
// names its CA (the name checked is --host, so the certificate needs that IP
// in its subjectAltName); without --ca-file they accept any certificate,
// which is enough on loopback, where nobody sits in between.

#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <nlohmann/json.hpp>

#include "auth/jwt.h"
#include "im/client.h"
#include "link_shaper.h"
#include "proto/im.pb.h"
#include "store/conv_id.h"
#include "store/store.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;
using im::Cmd;
using im::Frame;

struct Options {
  std::string scenario = "w2";
  std::string host = "127.0.0.1";
  std::uint16_t port = 9700;
  int server_pid = 0;
  std::string secret;
  int threads = 1;
  int conns = 1000;       // W1, W5
  int pairs = 100;        // W2
  int window = 100;       // W2, W3
  int members = 500;      // W3, W7
  int online = 2000;      // W7: members logged in
  int senders = 1;        // W3
  int messages = 100000;  // W4, W6
  int conversations = 1000;  // conv
  double duration_s = 10;
  int body_bytes = 100;
  int inflight = 1000;   // W5 handshakes in flight
  double rate = 0;       // W2/W3: total SENDs per second (0: as fast as the window allows)
  int source_addrs = 8;  // clients connect from 127.0.0.2 .. 127.0.0.(N+1), ports from 10000
  int link_delay_ms = 100;                // W8: each way
  int link_down_bytes_per_s = 32 * 1024;  // W8
  std::string imserver;  // W6
  std::string config;    // W6
  std::string data_dir;  // W6
  std::string run_id;    // prefixes uids, so runs on one server do not meet
  std::string transport = "tcp";
  std::string ca_file;       // tls, wss: verify against this CA ("": no verification)
  bool search_text = false;  // W2/W3: every SEND carries a search_text (PROTOCOL 8.6)
  im::ClientOptions client;  // made from transport and ca_file; shared by every client
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// ---- /proc ----
long rss_kb(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return 0;
}
double cpu_s(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  unsigned long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoul(field);
    if (i == 15) stime = std::stoul(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}
double self_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}
long slab_kb() {
  std::ifstream in("/proc/meminfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("Slab:", 0) == 0) return std::stol(line.substr(5));
  return 0;
}

// ---- latency ----
struct Latencies {
  std::mutex mutex;
  std::vector<std::uint32_t> us;
  void add(std::vector<std::uint32_t>& local) {
    std::lock_guard lock(mutex);
    us.insert(us.end(), local.begin(), local.end());
    local.clear();
  }
  // Under the lock: a session's close handler may still add its samples.
  double pct(double p) {
    std::lock_guard lock(mutex);
    if (us.empty()) return 0;
    std::sort(us.begin(), us.end());
    return us[std::min(us.size() - 1, static_cast<std::size_t>(p * static_cast<double>(us.size())))] / 1000.0;
  }
};

// ---- a pool of generator threads, each with its own io_context ----
class Pool {
 public:
  explicit Pool(int threads) : contexts_(threads) {
    for (auto& c : contexts_) {
      auto ctx = std::make_unique<asio::io_context>(1);
      guards_.emplace_back(asio::make_work_guard(*ctx));
      threads_.emplace_back([c = ctx.get()] { c->run(); });
      c = std::move(ctx);
    }
  }
  ~Pool() { stop(); }
  // Stops and joins the threads (the contexts stay until destruction): call
  // it before the locals that handlers refer to go out of scope.
  void stop() {
    guards_.clear();
    for (auto& c : contexts_) c->stop();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }
  asio::io_context& at(std::size_t i) { return *contexts_[i % contexts_.size()]; }
  std::size_t size() const { return contexts_.size(); }

 private:
  std::vector<std::unique_ptr<asio::io_context>> contexts_;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards_;
  std::vector<std::thread> threads_;
};

struct Session {
  std::shared_ptr<im::Client> client;
  std::string uid;
  std::int64_t login_ns = 0;  // connect start to LoginResp
  bool ok = false;
  std::uint64_t inbox_max = 0;
};

// Connects and logs in every uid (at most `inflight` handshakes at once).
std::vector<std::shared_ptr<Session>> login_all(Pool& pool, const Options& o, const std::vector<std::string>& uids,
                                                int inflight, int device_type = 1) {
  std::vector<std::shared_ptr<Session>> sessions;
  for (const auto& uid : uids) sessions.push_back(std::make_shared<Session>(Session{nullptr, uid}));
  std::atomic<std::size_t> next{0}, done{0};
  const asio::ip::tcp::endpoint server(asio::ip::make_address(o.host), o.port);
  std::mutex m;
  std::condition_variable cv;
  std::function<void(std::size_t)> start_one;
  start_one = [&](std::size_t i) {
    if (i >= sessions.size()) return;
    auto s = sessions[i];
    auto& ctx = pool.at(i);
    asio::post(ctx, [&, i, s, &ctx = ctx] {
      s->client = im::Client::create(ctx, o.client);
      const std::int64_t t0 = now_ns();
      auto finish = [&, s, t0](bool ok) {
        s->login_ns = now_ns() - t0;
        s->ok = ok;
        // Start the next one before counting this one done: once the last
        // is counted, login_all returns and its locals (start_one too) go.
        start_one(next.fetch_add(1));
        std::lock_guard lock(m);  // so the waiter cannot see the last one before the notify
        if (done.fetch_add(1) + 1 == sessions.size()) cv.notify_all();
      };
      // The client picks its source endpoint: below the kernel's ephemeral
      // range, spread over 127.0.0.x, so connect() needs no port search.
      asio::ip::tcp::endpoint source;
      if (o.source_addrs > 0 && server.address().is_v4())
        source = asio::ip::tcp::endpoint(
            asio::ip::make_address_v4(0x7F000002u + static_cast<std::uint32_t>(i % o.source_addrs)),
            static_cast<std::uint16_t>(10000 + i / static_cast<std::size_t>(o.source_addrs)));
      s->client->connect(
          server,
          [&, s, finish](const asio::error_code& ec) {
            if (ec) {
              static std::once_flag reported;
              std::call_once(reported, [&] { std::cerr << "imbench: connect: " << ec.message() << "\n"; });
              return finish(false);
            }
            im::v1::LoginReq req;
            req.set_uid(s->uid);
            req.set_token(im::mint_jwt(o.secret, s->uid, 0));
            req.set_device_type(static_cast<im::v1::DeviceType>(device_type));
            s->client->request(Cmd::kLogin, &req, [s, finish](Frame& f) {
              im::v1::LoginResp resp;
              if (f.ok() && f.parse(resp)) s->inbox_max = resp.inbox_max_seq();
              finish(f.ok());
            });
          },
          source);
    });
  };
  for (int i = 0; i < std::min<int>(inflight, static_cast<int>(sessions.size())); ++i) start_one(next.fetch_add(1));
  std::unique_lock lock(m);
  cv.wait_for(lock, 300s, [&] { return done.load() == sessions.size(); });
  return sessions;
}

// A blocking LOGIN on `c`; the answer, if any came.
std::optional<Frame> sync_login(im::SyncClient& c, const Options& o, const std::string& uid, im::v1::DeviceType device,
                                const std::string& compression = {}) {
  im::v1::LoginReq login;
  login.set_uid(uid);
  login.set_token(im::mint_jwt(o.secret, uid, 0));
  login.set_device_type(device);
  login.set_compression(compression);
  return c.call(Cmd::kLogin, &login, 5s);
}

std::string body_with_time(int bytes) {
  std::string body(static_cast<std::size_t>(std::max(bytes, 8)), 'x');
  const std::int64_t t = now_ns();
  std::memcpy(body.data(), &t, sizeof t);
  return body;
}
std::int64_t time_of(const std::string& body) {
  std::int64_t t = 0;
  if (body.size() >= sizeof t) std::memcpy(&t, body.data(), sizeof t);
  return t;
}

nlohmann::json result_base(const Options& o, double secs, double server_cpu0, double self_cpu0) {
  nlohmann::json j;
  j["scenario"] = o.scenario;
  j["transport"] = o.transport;
  j["seconds"] = secs;
  if (o.server_pid) {
    j["server_rss_kb"] = rss_kb(o.server_pid);
    j["server_cpu_s"] = cpu_s(o.server_pid) - server_cpu0;
    j["server_cores"] = (cpu_s(o.server_pid) - server_cpu0) / secs;
  }
  j["generator_cpu_s"] = self_cpu_s() - self_cpu0;
  j["generator_cores"] = (self_cpu_s() - self_cpu0) / secs;
  return j;
}

void print(const nlohmann::json& j) {
  std::cout << "\n" << j["scenario"].get<std::string>() << "\n";
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (it.key() == "scenario") continue;
    std::cout << fmt::format("  {:<28} {}\n", it.key(), it.value().dump());
  }
  std::cout << "JSON " << j.dump() << "\n" << std::flush;
}

// ---- W2 / W3: senders keep a window of SENDs; receivers count PUSHes and ACK ----
struct Flow {
  std::atomic<bool> stop{false};
  std::atomic<bool> measuring{false};
  std::atomic<std::uint64_t> delivered{0};
  std::atomic<std::uint64_t> sent_ok{0};
  std::atomic<std::uint64_t> sent_measured{0};  // answered OK while measuring
  std::atomic<std::uint64_t> errors{0};
  // One paced sender's period (s), more than the last one's phase: the
  // warm-up lasts that much longer, so that every sender is under way when
  // the measuring starts.
  double ramp_s = 0;
  Latencies lat;
  // The worst latency (us) of the deliveries of each 100 ms of the measured
  // time, to see when a tail happens (a stall) rather than only its size.
  static constexpr std::size_t kSlots = 6000;  // 10 minutes
  std::atomic<std::int64_t> measure_start_ns{0};
  std::vector<std::atomic<std::uint32_t>> worst = std::vector<std::atomic<std::uint32_t>>(kSlots);
  void note_worst(std::int64_t now, std::uint32_t us) {
    const std::int64_t slot = (now - measure_start_ns.load(std::memory_order_relaxed)) / 100'000'000;
    if (slot < 0 || slot >= static_cast<std::int64_t>(kSlots)) return;
    auto& w = worst[static_cast<std::size_t>(slot)];
    std::uint32_t seen = w.load(std::memory_order_relaxed);
    // Each failure means the slot rose (or, rarely, a spurious failure):
    // bounded all the same.
    for (int tries = 0; tries < 64 && seen < us; ++tries)
      if (w.compare_exchange_weak(seen, us, std::memory_order_relaxed)) break;
  }
};

void receive_pushes(const std::shared_ptr<Session>& s, Flow& flow) {
  auto local = std::make_shared<std::vector<std::uint32_t>>();
  s->client->on_frame([c = s->client.get(), &flow, local](Frame& f) {
    if (f.header.cmd != Cmd::kPush) return;
    // One per generator thread, reused: parsing reuses its messages and
    // strings (perf, W7: malloc and free of a fresh one per frame were about
    // a sixth of imbench's CPU).
    static thread_local im::v1::MessagePush push;
    if (!f.parse(push) || push.messages_size() == 0) return;
    const std::int64_t now = now_ns();
    if (flow.measuring.load(std::memory_order_acquire)) {  // measure_start_ns is set before
      std::uint32_t worst = 0;
      for (const auto& m : push.messages()) {
        local->push_back(static_cast<std::uint32_t>(std::max<std::int64_t>(0, now - time_of(m.body())) / 1000));
        worst = std::max(worst, local->back());
      }
      flow.note_worst(now, worst);
      flow.delivered.fetch_add(push.messages_size(), std::memory_order_relaxed);
      if (local->size() >= 4096) flow.lat.add(*local);
    }
    // A large group's messages (PROTOCOL 9) have no inbox seq to acknowledge.
    const std::uint64_t last = push.messages(push.messages_size() - 1).inbox_seq();
    if (last == 0) return;
    im::v1::AckReq ack;
    ack.set_inbox_seq(last);
    c->notify(Cmd::kAck, &ack);
  });
  s->client->on_close([local, &flow](const asio::error_code&) { flow.lat.add(*local); });
}

// Words of chat-like text (search_text_of, chat_text).
constexpr const char* kChatWords[] = {
    "ok",     "see",    "you",     "at",     "the",   "meeting", "tomorrow", "I",    "think", "we",
    "should", "move",   "budget",  "review", "to",    "Friday",  "can",      "send", "me",    "latest",
    "draft",  "thanks", "sounds",  "good",   "lunch", "today",   "running",  "late", "sorry", "call",
    "later",  "did",    "deploy",  "work",   "yes",   "no",      "maybe",    "let",  "check", "ticket",
    "done",   "great",  "weekend", "plans",  "photo", "from",    "trip",     "haha", "nice",  "where"};

// Chat-like search texts (PROTOCOL 8.6) for the k-th message: English
// words, a Chinese phrase, and a token only that message has ("u<k>").
std::string search_text_of(std::uint64_t k) {
  static constexpr const char* kPhrases[] = {
      "明天下午开会讨论预算", "周末去爬山吗", "我晚点到",     "项目进度怎么样", "收到，谢谢",
      "下周一发布",           "午饭吃什么",   "会议改到三点", "东京出差",       "회의는 내일"};
  std::uint64_t x = k * 0x9E3779B97F4A7C15ull + 1;
  auto next = [&x] {
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    return x;
  };
  std::string text;
  const int words = 5 + static_cast<int>(next() % 6);
  for (int i = 0; i < words; ++i) {
    text += kChatWords[next() % std::size(kChatWords)];
    text += ' ';
  }
  text += kPhrases[next() % std::size(kPhrases)];
  text += fmt::format(" u{}", k);
  return text;
}

// The paced senders of one generator thread share one 1 ms tick. A timer
// per SEND cost a timerfd_settime each: 16% of the generator's CPU at
// 68,000 SENDs/s (perf), 0.8 of the 2 cores in all, which the server under
// test then lacked. A SEND still goes out no earlier than its slot and at
// most 1 ms after it.
struct Pacer {
  std::function<void(std::uint64_t)> send;  // sends the k-th SEND; its answer calls answered()
  const std::atomic<bool>* stop = nullptr;
  Clock::time_point start;
  double rate = 0;  // SENDs per second of this sender
  int window = 0;
  std::uint64_t next = 0;  // the next SEND's k
  int unanswered = 0;
  // Sends each SEND whose slot has come, within the window; false once the
  // flow has stopped.
  bool release(Clock::time_point now) {
    if (stop->load(std::memory_order_relaxed)) return false;
    while (unanswered < window && start + std::chrono::duration_cast<Clock::duration>(
                                              std::chrono::duration<double>(static_cast<double>(next) / rate)) <=
                                      now) {
      ++unanswered;
      send(next++);
    }
    return true;
  }
  void answered() {
    --unanswered;
    release(Clock::now());  // a sender behind its slots catches up at once
  }
};

class Ticker {
 public:
  // The ticker of the calling thread, which runs `ex`'s io_context.
  static Ticker& of_this_thread(const asio::any_io_executor& ex) {
    thread_local std::unique_ptr<Ticker> ticker;
    if (!ticker) ticker = std::make_unique<Ticker>(ex);
    return *ticker;
  }
  explicit Ticker(const asio::any_io_executor& ex) : timer_(ex) {}
  void add(std::shared_ptr<Pacer> p) {
    p->release(Clock::now());
    pacers_.push_back(std::move(p));
    if (!armed_) arm();
  }

 private:
  void arm() {
    armed_ = true;
    timer_.expires_after(1ms);
    timer_.async_wait([this](const asio::error_code& ec) {
      armed_ = false;
      if (ec) return;
      const auto now = Clock::now();
      std::erase_if(pacers_, [now](const std::shared_ptr<Pacer>& p) { return !p->release(now); });
      if (!pacers_.empty()) arm();
    });
  }
  asio::steady_timer timer_;
  std::vector<std::shared_ptr<Pacer>> pacers_;
  bool armed_ = false;
};

// Keeps `o.window` SENDs unanswered; with `per_sender_rate` > 0 the k-th
// SEND also waits for its slot (start + (k + phase) / rate), so the load is
// paced. Senders of one flow take phases i / n: together they offer an even
// stream, as independent clients do. With one phase for all, 100 senders
// sent their SENDs in the same tick (a burst of 100 every 1 / rate), and
// the burst's own queue was a floor under every latency: p50 3.6 ms at
// 1,000 SENDs/s (bench/ANALYSIS.md, "W2 latency at half rate").
void send_window(const std::shared_ptr<Session>& s, Flow& flow, const std::string& to, im::v1::ConvType type,
                 const Options& o, double per_sender_rate = 0, double phase = 0) {
  // Sends the k-th SEND; `answered` runs on its answer.
  auto send = [c = s->client.get(), &flow, to, type, &o, uid = s->uid](std::uint64_t k, auto answered) {
    im::v1::SendReq req;
    req.set_client_msg_id(fmt::format("{}-{}", uid, k));
    req.set_conv_type(type);
    req.set_to(to);
    req.set_content_type(1);
    req.set_body(body_with_time(o.body_bytes));
    if (o.search_text) req.set_search_text(search_text_of(k));
    c->request(Cmd::kSend, &req, [&flow, answered = std::move(answered)](Frame& f) {
      if (f.ok()) {
        flow.sent_ok.fetch_add(1, std::memory_order_relaxed);
        if (flow.measuring.load(std::memory_order_relaxed)) flow.sent_measured.fetch_add(1, std::memory_order_relaxed);
      } else {
        flow.errors.fetch_add(1, std::memory_order_relaxed);
      }
      answered();
    });
  };
  const auto ex = s->client->socket().get_executor();
  if (per_sender_rate > 0) {
    flow.ramp_s = std::max(flow.ramp_s, 1 / per_sender_rate);  // before run_flow, on its thread
    auto pacer = std::make_shared<Pacer>();
    pacer->stop = &flow.stop;
    pacer->start = Clock::now() +
                   std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(phase / per_sender_rate));
    pacer->rate = per_sender_rate;
    pacer->window = o.window;
    // The pacer owns `send`, which refers to it only weakly.
    pacer->send = [send, weak = std::weak_ptr<Pacer>(pacer)](std::uint64_t k) {
      send(k, [weak] {
        if (auto p = weak.lock()) p->answered();
      });
    };
    asio::post(ex, [ex, pacer] { Ticker::of_this_thread(ex).add(pacer); });
    return;
  }
  auto counter = std::make_shared<std::uint64_t>(0);
  auto send_one = std::make_shared<std::function<void()>>();
  // Each unanswered SEND's handler keeps `send_one` alive; it holds itself
  // only weakly, so it goes with the last answer.
  *send_one = [send, counter, &flow, weak = std::weak_ptr<std::function<void()>>(send_one)] {
    if (flow.stop.load(std::memory_order_relaxed)) return;
    auto self = weak.lock();  // held by whoever runs it
    send((*counter)++, [self] { (*self)(); });
  };
  for (int i = 0; i < o.window; ++i) asio::post(ex, [send_one] { (*send_one)(); });
}

nlohmann::json run_flow(const Options& o, Flow& flow, std::vector<std::shared_ptr<Session>>& all, const char* what) {
  std::this_thread::sleep_for(1s + std::chrono::duration<double>(flow.ramp_s));  // warm-up
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  flow.measure_start_ns = now_ns();
  const auto wall0 = std::chrono::system_clock::now();
  flow.measuring = true;
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.duration_s));
  flow.measuring = false;
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto j = result_base(o, secs, server_cpu0, self_cpu0);
  flow.stop = true;
  std::this_thread::sleep_for(500ms);
  for (auto& s : all) asio::post(s->client->socket().get_executor(), [c = s->client] { c->close(); });
  std::this_thread::sleep_for(200ms);
  j[what] = flow.delivered.load();
  j[std::string(what) + "_per_s"] = static_cast<double>(flow.delivered.load()) / secs;
  j["errors"] = flow.errors.load();
  j["latency_p50_ms"] = flow.lat.pct(0.50);
  j["latency_p99_ms"] = flow.lat.pct(0.99);
  j["latency_p999_ms"] = flow.lat.pct(0.999);
  // When the tail happened: the measured time's start on the wall clock
  // (to set beside the server's and RocksDB's logs) and the worst latency
  // of each 100 ms after it.
  j["measure_start_unix_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(wall0.time_since_epoch()).count();
  std::vector<double> worst_ms;
  for (std::size_t i = 0; i < std::min(Flow::kSlots, static_cast<std::size_t>(secs * 10)); ++i)
    worst_ms.push_back(flow.worst[i].load() / 1000.0);
  j["latency_worst_ms_per_100ms"] = worst_ms;
  return j;
}

nlohmann::json w2(const Options& o) {
  Pool pool(o.threads);
  std::vector<std::string> uids;
  for (int i = 0; i < o.pairs; ++i) {
    uids.push_back(fmt::format("{}s{}", o.run_id, i));
    uids.push_back(fmt::format("{}r{}", o.run_id, i));
  }
  auto all = login_all(pool, o, uids, o.inflight);
  Flow flow;
  for (int i = 0; i < o.pairs; ++i) receive_pushes(all[2 * i + 1], flow);
  for (int i = 0; i < o.pairs; ++i)
    send_window(all[2 * i], flow, all[2 * i + 1]->uid, im::v1::C2C, o, o.rate / o.pairs,
                static_cast<double>(i) / o.pairs);
  auto j = run_flow(o, flow, all, "delivered");
  pool.stop();
  j["pairs"] = o.pairs;
  j["offered_rate"] = o.rate;
  j["window"] = o.window;
  return j;
}

nlohmann::json w3(const Options& o) {
  Pool pool(o.threads);
  std::vector<std::string> uids;
  for (int i = 0; i < o.members; ++i) uids.push_back(fmt::format("{}m{}", o.run_id, i));
  auto all = login_all(pool, o, uids, o.inflight);
  const std::string gid = o.run_id + "bench-group";
  {
    im::SyncClient owner;
    if (!owner.connect(o.host, o.port, o.client)) throw std::runtime_error("the group owner could not connect");
    sync_login(owner, o, uids[0] + "-owner", im::v1::DESKTOP);
    im::v1::GroupCreateReq create;
    create.set_gid(gid);
    create.set_name("bench");
    for (const auto& u : uids) create.add_members(u);
    auto r = owner.call(Cmd::kGroupCreate, &create, 30s);
    if (!r || !r->ok()) throw std::runtime_error("GROUP_CREATE failed: " + (r ? r->error_message() : "no answer"));
  }
  Flow flow;
  for (auto& s : all) receive_pushes(s, flow);
  std::this_thread::sleep_for(1s);  // the creation events
  for (int i = 0; i < o.senders; ++i)
    send_window(all[static_cast<std::size_t>(i)], flow, gid, im::v1::GROUP, o, o.rate / o.senders,
                static_cast<double>(i) / o.senders);
  auto j = run_flow(o, flow, all, "deliveries");
  pool.stop();
  j["members"] = o.members;
  j["senders"] = o.senders;
  j["offered_rate"] = o.rate;
  j["window"] = o.window;
  return j;
}

// W7 (PROTOCOL 9): a group of `members` built by GROUP_CREATE and
// GROUP_ADD_MEMBERS in frame-sized steps (timed: the switch to read fan-out
// happens on the way), `online` of them logged in, one of those sending.
nlohmann::json w7(const Options& o) {
  constexpr int kStep = 4000;  // uids per request: about 40 KB, within a 64 KiB frame
  std::vector<std::string> uids;
  for (int i = 0; i < o.members; ++i) uids.push_back(fmt::format("{}L{}", o.run_id, i));
  const std::string gid = o.run_id + "large-group";
  im::SyncClient owner;
  if (!owner.connect(o.host, o.port, o.client)) throw std::runtime_error("the group owner could not connect");
  sync_login(owner, o, uids[0], im::v1::DESKTOP);
  const auto build0 = Clock::now();
  int added = 0;
  double switch_step_s = 0;
  for (int from = 1; from < o.members; from += kStep) {
    const int to = std::min(o.members, from + kStep);
    const auto t0 = Clock::now();
    std::optional<Frame> r;
    if (from == 1) {
      im::v1::GroupCreateReq create;
      create.set_gid(gid);
      create.set_name("w7");
      for (int i = from; i < to; ++i) create.add_members(uids[static_cast<std::size_t>(i)]);
      r = owner.call(Cmd::kGroupCreate, &create, 60s);
    } else {
      im::v1::GroupMembersReq add;
      add.set_gid(gid);
      for (int i = from; i < to; ++i) add.add_uids(uids[static_cast<std::size_t>(i)]);
      r = owner.call(Cmd::kGroupAddMembers, &add, 60s);
    }
    if (!r || !r->ok())
      throw std::runtime_error("building the group failed: " + (r ? r->error_message() : "no answer"));
    switch_step_s = std::max(switch_step_s, std::chrono::duration<double>(Clock::now() - t0).count());
    added = to;
  }
  const double build_s = std::chrono::duration<double>(Clock::now() - build0).count();
  im::v1::GroupGetReq get;
  get.set_gid(gid);
  auto g = owner.call(Cmd::kGroupGet, &get, 10s);
  im::v1::GroupResp info;
  if (!g || !g->ok() || !g->parse(info)) throw std::runtime_error("GROUP_GET failed");
  owner.close();

  Pool pool(o.threads);
  std::vector<std::string> online(uids.begin(), uids.begin() + std::min(o.online, o.members));
  auto all = login_all(pool, o, online, o.inflight);
  Flow flow;
  for (auto& s : all) receive_pushes(s, flow);
  std::this_thread::sleep_for(1s);
  send_window(all[0], flow, gid, im::v1::GROUP, o, o.rate);
  auto j = run_flow(o, flow, all, "deliveries");
  pool.stop();
  j["members"] = added;
  j["online"] = online.size();
  j["large"] = info.group().large();
  j["large_from_seq"] = info.group().large_from_seq();
  j["build_s"] = build_s;
  j["slowest_build_step_s"] = switch_step_s;
  j["messages_per_s"] = static_cast<double>(flow.sent_measured.load()) / j["seconds"].get<double>();
  j["window"] = o.window;
  j["offered_rate"] = o.rate;
  return j;
}

// Sends `n` messages to `to` from a filler user, 1000 unanswered at a time;
// returns when every one is answered. body(i) is the i-th body; `more`, when
// given, may change the i-th request further (its peer, a search_text).
void fill_inbox(Pool& pool, const Options& o, const std::string& to, int n, const std::function<std::string(int)>& body,
                const std::function<void(int, im::v1::SendReq&)>& more = {}) {
  auto filler = login_all(pool, o, {o.run_id + "filler"}, 1);
  if (filler.empty() || !filler[0]->ok) throw std::runtime_error("the filler could not log in");
  std::atomic<int> left{n}, answered{0};
  auto c = filler[0]->client;
  auto send_one = std::make_shared<std::function<void()>>();
  *send_one = [&, c, send_one] {
    const int i = left.fetch_sub(1);
    if (i <= 0) return;
    im::v1::SendReq req;
    req.set_client_msg_id(fmt::format("f{}", i));
    req.set_conv_type(im::v1::C2C);
    req.set_to(to);
    req.set_body(body(n - i));
    if (more) more(n - i, req);
    c->request(Cmd::kSend, &req, [&, send_one](Frame&) {
      (*send_one)();  // before counting: the waiter may move on at the last count
      answered.fetch_add(1);
    });
  };
  for (int i = 0; i < 1000; ++i) asio::post(c->socket().get_executor(), [send_one] { (*send_one)(); });
  const auto deadline = Clock::now() + 600s;
  while (answered.load() < n && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  if (answered.load() < n) throw std::runtime_error("the inbox was not filled in 600 s");
  // The last handlers may still hold `send_one`: let them run out on its loop.
  std::promise<void> drained;
  asio::post(c->socket().get_executor(), [&] {
    *send_one = nullptr;  // it holds itself
    drained.set_value();
  });
  drained.get_future().wait();
}

// PULLs pages of up to 1,000 from seq 0 until has_more is false; `page` sees
// each answer frame; returns the number of messages.
std::uint64_t pull_everything(im::SyncClient& c, const std::function<void(const Frame&)>& page = {}) {
  std::uint64_t after = 0, got = 0;
  for (int n = 0; n < 100000; ++n) {
    im::v1::PullReq req;
    req.set_after_seq(after);
    req.set_limit(1000);
    auto r = c.call(Cmd::kPull, &req, 60s);
    im::v1::PullResp resp;
    if (!r || !r->ok() || !r->parse(resp)) throw std::runtime_error("PULL failed");
    if (page) page(*r);
    got += static_cast<std::uint64_t>(resp.messages_size());
    if (resp.messages_size() > 0) after = resp.messages(resp.messages_size() - 1).inbox_seq();
    if (!resp.has_more()) break;
  }
  return got;
}

nlohmann::json w4(const Options& o) {
  Pool pool(o.threads);
  const std::string puller = o.run_id + "puller";
  fill_inbox(pool, o, puller, o.messages,
             [&](int) { return std::string(static_cast<std::size_t>(o.body_bytes), 'p'); });
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  const auto t0 = Clock::now();
  im::SyncClient c;
  if (!c.connect(o.host, o.port, o.client)) throw std::runtime_error("the puller could not connect");
  sync_login(c, o, puller, im::v1::IOS);
  const std::uint64_t got = pull_everything(c);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto j = result_base(o, secs, server_cpu0, self_cpu0);
  j["messages"] = got;
  j["messages_per_s"] = static_cast<double>(got) / secs;
  j["time_to_last_ms"] = secs * 1000;
  pool.stop();
  return j;
}

// ---- W8: a resync over a slow mobile link: --messages (1,000) waiting, a
// LinkShaper of 100 ms each way and 32 KiB/s down between the puller and
// the server; LOGIN then PULL pages of up to 1,000 until none is left,
// without and with compression = "zstd". Bodies are chat-like text. ----

// About `bytes` of chat-like text, different for each `i`.
std::string chat_text(int i, int bytes) {
  std::mt19937 rng(static_cast<std::uint32_t>(i) * 2654435761u + 1);
  std::uniform_int_distribution<std::size_t> pick(0, std::size(kChatWords) - 1);
  std::string text;
  while (text.size() < static_cast<std::size_t>(bytes)) {
    if (!text.empty()) text += ' ';
    text += kChatWords[pick(rng)];
  }
  return text;
}

nlohmann::json w8(const Options& o) {
  Pool pool(o.threads);
  const std::string puller = o.run_id + "puller";
  fill_inbox(pool, o, puller, o.messages, [&](int i) { return chat_text(i, o.body_bytes); });
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  const auto t00 = Clock::now();
  nlohmann::json runs;
  for (const std::string compression : {"", "zstd"}) {
    imbench::LinkShaper shaper({o.host, o.port, std::chrono::milliseconds(o.link_delay_ms),
                                static_cast<std::uint64_t>(o.link_down_bytes_per_s)});
    const auto t0 = Clock::now();
    im::SyncClient c;
    if (!c.connect("127.0.0.1", shaper.port(), o.client)) throw std::runtime_error("the puller could not connect");
    auto login = sync_login(c, o, puller, im::v1::IOS, compression);
    im::v1::LoginResp lr;
    if (!login || !login->ok() || !login->parse(lr)) throw std::runtime_error("the puller could not log in");
    if (lr.compression() != compression) throw std::runtime_error("the server did not agree to " + compression);
    std::uint64_t pages = 0, compressed_pages = 0, wire_body_bytes = 0, body_bytes = 0;
    const std::uint64_t got = pull_everything(c, [&](const Frame& f) {
      ++pages;
      if ((f.header.flags & im::kFlagCompressed) != 0) ++compressed_pages;
      wire_body_bytes += f.header.body_len;
      body_bytes += f.body.size();
    });
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    if (got != static_cast<std::uint64_t>(o.messages))
      throw std::runtime_error(fmt::format("{} messages came instead of {}", got, o.messages));
    const std::string name = compression.empty() ? "plain" : compression;
    runs[name] = {{"time_to_last_ms", secs * 1000},         {"bytes_down", shaper.bytes_down()},
                  {"bytes_up", shaper.bytes_up()},          {"pull_pages", pages},
                  {"pages_compressed", compressed_pages},   {"pull_body_bytes", body_bytes},
                  {"pull_wire_body_bytes", wire_body_bytes}};
  }
  auto j = result_base(o, std::chrono::duration<double>(Clock::now() - t00).count(), server_cpu0, self_cpu0);
  j["messages"] = o.messages;
  j["body_bytes"] = o.body_bytes;
  j["link_delay_ms"] = o.link_delay_ms;
  j["link_down_bytes_per_s"] = o.link_down_bytes_per_s;
  for (const auto& [name, r] : runs.items())
    for (const auto& [k, v] : r.items()) j[name + "_" + k] = v;
  j["bytes_ratio"] = runs["plain"]["bytes_down"].get<double>() / runs["zstd"]["bytes_down"].get<double>();
  pool.stop();
  return j;
}

// ---- conv: CONV_LIST of a user with --conversations conversations (each a
// peer that sent one message), its latency; then CONV_READ throughput
// (every conversation read, a window of --window at once, after each of
// --rounds rounds of one more message per peer) ----
nlohmann::json conv(const Options& o) {
  Pool pool(o.threads);
  const std::string me = o.run_id + "me";
  std::vector<std::string> peers;
  for (int i = 0; i < o.conversations; ++i) peers.push_back(fmt::format("{}p{}", o.run_id, i));
  // The reader logs in with the peers (one login_all: source ports are
  // numbered per call), on another device type than the lister.
  std::vector<std::string> uids = peers;
  uids.push_back(me);
  auto sessions = login_all(pool, o, uids, o.inflight, 2);
  for (const auto& s : sessions)
    if (!s->ok) throw std::runtime_error("a peer could not log in");
  const std::vector<std::shared_ptr<Session>> reader{sessions.back()};
  sessions.pop_back();
  // Every peer sends `me` one message; returns when all are answered.
  auto round = [&](int r) {
    std::atomic<std::size_t> answered{0};
    for (const auto& s : sessions) {
      asio::post(s->client->socket().get_executor(), [&, s, r] {
        im::v1::SendReq req;
        req.set_client_msg_id(fmt::format("r{}", r));
        req.set_conv_type(im::v1::C2C);
        req.set_to(me);
        req.set_body(std::string(static_cast<std::size_t>(o.body_bytes), 'c'));
        s->client->request(Cmd::kSend, &req, [&answered](Frame&) { answered.fetch_add(1); });
      });
    }
    const auto deadline = Clock::now() + 120s;
    while (answered.load() < sessions.size() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
    if (answered.load() < sessions.size()) throw std::runtime_error("the peers' SENDs were not answered");
  };
  round(0);
  im::SyncClient c;
  if (!c.connect(o.host, o.port, o.client)) throw std::runtime_error("the lister could not connect");
  sync_login(c, o, me, im::v1::IOS);
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  const auto t0 = Clock::now();
  // The first CONV_LIST loads the user's book: timed apart.
  auto list_once = [&](std::uint32_t limit, const std::string& cursor, im::v1::ConvListResp& resp) {
    im::v1::ConvListReq req;
    req.set_limit(limit);
    req.set_cursor(cursor);
    auto r = c.call(Cmd::kConvList, &req, 30s);
    if (!r || !r->ok() || !r->parse(resp)) throw std::runtime_error("CONV_LIST failed");
  };
  im::v1::ConvListResp resp;
  auto t = Clock::now();
  list_once(100, "", resp);
  const double first_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  if (resp.total_unread() != static_cast<std::uint32_t>(o.conversations))
    throw std::runtime_error(fmt::format("total_unread {} for {} conversations", resp.total_unread(), o.conversations));
  Latencies page;
  std::vector<std::uint32_t> local;
  const auto list_end = Clock::now() + std::chrono::duration<double>(o.duration_s);
  while (Clock::now() < list_end) {
    t = Clock::now();
    list_once(100, "", resp);
    local.push_back(static_cast<std::uint32_t>(std::chrono::duration<double, std::micro>(Clock::now() - t).count()));
  }
  page.add(local);
  // The whole list, pages of 500.
  t = Clock::now();
  std::size_t listed = 0;
  std::string cursor;
  for (int i = 0; i < 10000; ++i) {
    list_once(500, cursor, resp);
    listed += static_cast<std::size_t>(resp.conversations_size());
    if (!resp.has_more()) break;
    cursor = resp.next_cursor();
  }
  const double full_ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  // CONV_READ: each round, one new message per peer (not timed), then every
  // conversation read with a window.
  const int rounds = 3;
  double read_s = 0;
  std::uint64_t reads = 0;
  Latencies read_lat;
  for (int r = 1; r <= rounds; ++r) {
    round(r);
    auto client = reader[0]->client;
    std::atomic<std::size_t> next{0}, done{0};
    std::mutex m;
    std::vector<std::uint32_t> lat;
    auto read_one = std::make_shared<std::function<void()>>();
    *read_one = [&, client, read_one] {
      const std::size_t i = next.fetch_add(1);
      if (i >= peers.size()) return;
      im::v1::ConvReadReq req;
      req.set_conv_type(im::v1::C2C);
      req.set_peer(peers[i]);
      const std::int64_t sent = now_ns();
      client->request(Cmd::kConvRead, &req, [&, read_one, sent](Frame&) {
        {
          std::lock_guard lock(m);
          lat.push_back(static_cast<std::uint32_t>((now_ns() - sent) / 1000));
        }
        (*read_one)();
        done.fetch_add(1);
      });
    };
    t = Clock::now();
    for (int i = 0; i < o.window; ++i) asio::post(client->socket().get_executor(), [read_one] { (*read_one)(); });
    const auto deadline = Clock::now() + 120s;
    while (done.load() < peers.size() && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    read_s += std::chrono::duration<double>(Clock::now() - t).count();
    reads += done.load();
    std::lock_guard lock(m);
    read_lat.add(lat);
  }
  list_once(1, "", resp);
  if (resp.total_unread() != 0) throw std::runtime_error("unread left after reading everything");
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto j = result_base(o, secs, server_cpu0, self_cpu0);
  j["conversations"] = o.conversations;
  j["list_first_ms"] = first_ms;
  j["list_page100_count"] = page.us.size();
  j["list_page100_p50_ms"] = page.pct(0.50);
  j["list_page100_p99_ms"] = page.pct(0.99);
  j["list_all_pages500_ms"] = full_ms;
  j["listed"] = listed;
  j["conv_read_per_s"] = static_cast<double>(reads) / read_s;
  j["conv_read_p50_ms"] = read_lat.pct(0.50);
  j["conv_read_p99_ms"] = read_lat.pct(0.99);
  pool.stop();
  return j;
}

// ---- search: a user with --messages (100,000) indexed messages across
// --conversations (200) C2C conversations, each with a search_text
// (search_text_of); the time until the last one is found (the indexer's
// throughput), then SEARCH one at a time for --duration seconds over a mix
// of queries, p50/p99 each; the index's size on disk (--data-dir). ----
nlohmann::json search_scenario(const Options& o) {
  Pool pool(o.threads);
  const std::string me = o.run_id + "filler";
  im::SyncClient c;
  if (!c.connect(o.host, o.port, o.client)) throw std::runtime_error("the searcher could not connect");
  // Another device type than the filler's session of the same user (one
  // session per device type: a second login would kick this one out).
  sync_login(c, o, me, im::v1::WEB);
  auto search = [&](const std::string& q, const std::string& peer) {
    im::v1::SearchReq req;
    req.set_query(q);
    if (!peer.empty()) {
      req.set_conv_type(im::v1::C2C);
      req.set_peer(peer);
    }
    auto r = c.call(Cmd::kSearch, &req, 30s);
    im::v1::SearchResp resp;
    if (!r) throw std::runtime_error("SEARCH " + q + ": no answer");
    if (!r->ok())
      throw std::runtime_error(
          fmt::format("SEARCH {}: status {}: {}", q, static_cast<int>(r->header.status), r->error_message()));
    if (!r->parse(resp)) throw std::runtime_error("SEARCH " + q + ": a body that does not parse");
    return resp;
  };
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  const auto t0 = Clock::now();
  fill_inbox(
      pool, o, "", o.messages, [&](int) { return std::string(static_cast<std::size_t>(o.body_bytes), 's'); },
      [&](int i, im::v1::SendReq& req) {
        req.set_to(fmt::format("{}p{}", o.run_id, i % o.conversations));
        req.set_search_text(search_text_of(static_cast<std::uint64_t>(i)));
      });
  const double send_s = std::chrono::duration<double>(Clock::now() - t0).count();
  // Everything is indexed once the last message of each conversation is
  // found (a conversation's rows are indexed in order; the conversations
  // in any order, and Xapian may commit in the middle of a round).
  const auto found_deadline = Clock::now() + 600s;
  for (int conv = 0; conv < std::min(o.conversations, o.messages); ++conv) {
    const std::string last = fmt::format("u{}", o.messages - 1 - conv);
    while (search(last, "").messages_size() == 0) {
      if (Clock::now() > found_deadline) throw std::runtime_error("the messages were not all found in 600 s");
      std::this_thread::sleep_for(20ms);
    }
  }
  const double indexed_s = std::chrono::duration<double>(Clock::now() - t0).count();
  struct Kind {
    std::string name;
    std::string query;
    bool scoped;
    std::vector<std::uint32_t> us;
    std::size_t hits = 0;
  };
  std::vector<Kind> kinds = {{"word", "budget", false, {}, 0},       {"two_words", "draft review", false, {}, 0},
                             {"prefix", "dep*", false, {}, 0},       {"rare_token", "", false, {}, 0},
                             {"cjk_2", "开会", false, {}, 0},        {"cjk_4", "讨论预算", false, {}, 0},
                             {"scoped_word", "budget", true, {}, 0}, {"no_hit", "zebra", false, {}, 0}};
  std::vector<std::uint32_t> all;
  std::uint64_t misses = 0;
  const auto end = Clock::now() + std::chrono::duration<double>(o.duration_s);
  for (std::uint64_t n = 0; Clock::now() < end && n < 10000000; ++n) {
    Kind& k = kinds[n % kinds.size()];
    const std::string q = k.name == "rare_token" ? fmt::format("u{}", (n * 7919) % o.messages) : k.query;
    const std::string peer = k.scoped ? fmt::format("{}p{}", o.run_id, n % o.conversations) : "";
    const auto t = Clock::now();
    auto resp = search(q, peer);
    const auto us = static_cast<std::uint32_t>(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
    k.us.push_back(us);
    all.push_back(us);
    k.hits += static_cast<std::size_t>(resp.messages_size());
    if (k.name == "rare_token" && resp.messages_size() != 1) ++misses;
  }
  if (misses > 0)
    throw std::runtime_error(fmt::format("{} messages indexed were not found by their own token", misses));
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto j = result_base(o, secs, server_cpu0, self_cpu0);
  auto pct = [](std::vector<std::uint32_t> v, double p) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))] / 1000.0;
  };
  j["messages"] = o.messages;
  j["conversations"] = o.conversations;
  j["send_per_s"] = o.messages / send_s;
  j["indexed_per_s"] = o.messages / indexed_s;
  j["all_found_after_send_ms"] = (indexed_s - send_s) * 1000;
  j["queries"] = all.size();
  j["search_p50_ms"] = pct(all, 0.50);
  j["search_p99_ms"] = pct(all, 0.99);
  for (const auto& k : kinds) {
    j["search_" + k.name + "_p50_ms"] = pct(k.us, 0.50);
    j["search_" + k.name + "_p99_ms"] = pct(k.us, 0.99);
    j["search_" + k.name + "_hits_per_query"] = k.us.empty() ? 0.0 : static_cast<double>(k.hits) / k.us.size();
  }
  if (!o.data_dir.empty()) {
    std::uint64_t bytes = 0;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(o.data_dir + "/search", ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec))
      if (it->is_regular_file(ec)) bytes += it->file_size(ec);
    j["index_bytes"] = bytes;
    j["index_bytes_per_message"] = static_cast<double>(bytes) / o.messages;
  }
  pool.stop();
  return j;
}

nlohmann::json w1_or_w5(const Options& o) {
  Pool pool(o.threads);
  std::vector<std::string> uids;
  for (int i = 0; i < o.conns; ++i) uids.push_back(fmt::format("{}c{}", o.run_id, i));
  const long rss0 = o.server_pid ? rss_kb(o.server_pid) : 0;
  const long self_rss0 = rss_kb(::getpid());
  const long slab0 = slab_kb();
  const double server_cpu0 = o.server_pid ? cpu_s(o.server_pid) : 0;
  const double self_cpu0 = self_cpu_s();
  const auto t0 = Clock::now();
  auto all = login_all(pool, o, uids, o.inflight);
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  auto j = result_base(o, secs, server_cpu0, self_cpu0);
  std::size_t ok = 0;
  std::vector<std::uint32_t> lat;
  for (auto& s : all) {
    ok += s->ok ? 1 : 0;
    if (s->ok) lat.push_back(static_cast<std::uint32_t>(s->login_ns / 1000));
  }
  Latencies l;
  l.add(lat);
  j["connections"] = o.conns;
  j["logged_in"] = ok;
  j["errors"] = static_cast<std::size_t>(o.conns) - ok;
  if (o.scenario == "w5") {
    j["logins_per_s"] = static_cast<double>(ok) / secs;
    j["login_p50_ms"] = l.pct(0.5);
    j["login_p99_ms"] = l.pct(0.99);
  } else {
    // Idle with heartbeats: each client beats at the interval; measure after settling.
    for (auto& s : all) {
      if (!s->ok) continue;
      asio::post(s->client->socket().get_executor(), [c = s->client] {
        auto timer = std::make_shared<asio::steady_timer>(c->socket().get_executor());
        auto beat = std::make_shared<std::function<void()>>();
        *beat = [c, timer, beat] {
          timer->expires_after(30s);
          timer->async_wait([c, beat](const asio::error_code& ec) {
            if (ec || !c->is_open()) return;
            c->request(Cmd::kHeartbeat, std::string_view{}, [](Frame&) {});
            (*beat)();
          });
        };
        (*beat)();
      });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(std::max(2.0, o.duration_s)));
    const long rss1 = o.server_pid ? rss_kb(o.server_pid) : 0;
    const long slab1 = slab_kb();
    j["server_rss_before_kb"] = rss0;
    j["server_rss_after_kb"] = rss1;
    j["server_bytes_per_conn"] = ok ? static_cast<double>(rss1 - rss0) * 1024.0 / static_cast<double>(ok) : 0;
    // What an idle client of the library costs (the transport's layers included).
    j["generator_bytes_per_conn"] =
        ok ? static_cast<double>(rss_kb(::getpid()) - self_rss0) * 1024.0 / static_cast<double>(ok) : 0;
    j["kernel_slab_bytes_per_conn_both_ends"] =
        ok ? static_cast<double>(slab1 - slab0) * 1024.0 / static_cast<double>(ok) : 0;
  }
  for (auto& s : all)
    if (s->client) asio::post(s->client->socket().get_executor(), [c = s->client] { c->close(); });
  std::this_thread::sleep_for(300ms);
  return j;
}

// ---- W6: restart with N stored messages ----
pid_t spawn_server(const Options& o) {
  pid_t pid = 0;
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::string bin = o.imserver, flag = "--config", cfg = o.config;
  char* argv[] = {bin.data(), flag.data(), cfg.data(), nullptr};
  if (posix_spawn(&pid, bin.c_str(), &actions, nullptr, argv, environ) != 0) throw std::runtime_error("spawn failed");
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

// Time from now until a LOGIN is answered OK (polling every 2 ms).
double until_login(const Options& o, const Clock::time_point t0) {
  for (int i = 0; i < 60000; ++i) {
    im::SyncClient c;
    if (c.connect(o.host, o.port)) {
      auto r = sync_login(c, o, o.run_id + "probe", im::v1::WEB);
      if (r && r->ok()) return std::chrono::duration<double>(Clock::now() - t0).count();
    }
    std::this_thread::sleep_for(2ms);
  }
  return -1;
}

nlohmann::json w6(const Options& o) {
  if (o.imserver.empty() || o.config.empty() || o.data_dir.empty())
    throw std::runtime_error("w6 needs --imserver, --config and --data-dir (the config's storage.data_dir)");
  const auto fill0 = Clock::now();
  std::uint64_t existing = 0;
  {
    im::StorageConfig sc;
    sc.data_dir = o.data_dir;
    auto store = im::store::Store::open(sc);
    if (!store) throw std::runtime_error(store.error().message);
    auto counted = (*store)->count_rows(im::store::Cf::kHistory, static_cast<std::uint64_t>(o.messages));
    if (!counted) throw std::runtime_error(counted.error().message);
    existing = *counted;
    // As SENDs would write them: 1,000 users in 500 conversations, history
    // row and two inbox rows per message, 1,000 messages a batch.
    const int users = 1000;
    std::vector<std::uint64_t> inbox(users, 0), conv(users / 2, 0);
    im::store::Batch batch(**store);
    const std::string body(static_cast<std::size_t>(o.body_bytes), 'w');
    for (std::uint64_t n = existing; n < static_cast<std::uint64_t>(o.messages); ++n) {
      const int c = static_cast<int>(n % (users / 2));
      const std::string a = fmt::format("{}u{}", o.run_id, 2 * c), b = fmt::format("{}u{}", o.run_id, 2 * c + 1);
      im::v1::Message m;
      m.set_msg_id(n + 1);
      m.set_conv_type(im::v1::C2C);
      m.set_from(a);
      m.set_to(b);
      m.set_conv_seq(++conv[static_cast<std::size_t>(c)]);
      m.set_client_msg_id(fmt::format("w6-{}", n));
      m.set_body(body);
      m.set_server_time_ms(1795000000000);
      const std::string conv_key = im::store::c2c_conv(a, b);
      batch.put_history(conv_key, m.conv_seq(), m.SerializeAsString());
      for (int side = 0; side < 2; ++side) {
        m.set_inbox_seq(++inbox[static_cast<std::size_t>(2 * c + side)]);
        batch.put_inbox(side ? b : a, m.inbox_seq(), m.SerializeAsString());
      }
      if (batch.count() >= 3000) {
        if (!(*store)->write(batch)) throw std::runtime_error("fill failed");
        batch.clear();
      }
    }
    if (!(*store)->write(batch)) throw std::runtime_error("fill failed");
  }
  const double fill_s = std::chrono::duration<double>(Clock::now() - fill0).count();
  // The fill leaves its WAL unflushed, as a crash would (up to
  // storage.max_wal_mb): the first start replays it, and is timed too.
  std::uintmax_t wal_bytes = 0;
  for (const auto& e : std::filesystem::directory_iterator(o.data_dir)) {
    if (e.path().extension() != ".log") continue;
    std::error_code gone;
    const std::uintmax_t size = std::filesystem::file_size(e.path(), gone);
    if (!gone) wal_bytes += size;
  }
  // Run it once, kill -9 it mid-life, then time the restart.
  const auto first0 = Clock::now();
  pid_t pid = spawn_server(o);
  const double first_ready_s = until_login(o, first0);
  if (first_ready_s < 0) throw std::runtime_error("the server did not come up");
  ::kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  const auto t0 = Clock::now();
  pid = spawn_server(o);
  const double ready_s = until_login(o, t0);
  nlohmann::json j;
  j["scenario"] = "w6";
  j["stored_messages"] = o.messages;
  j["fill_s"] = fill_s;
  j["server_rss_kb"] = rss_kb(pid);
  j["ready_after_kill9_s"] = ready_s;
  j["wal_mb_after_fill"] = static_cast<double>(wal_bytes) / (1 << 20);
  j["ready_replaying_fill_wal_s"] = first_ready_s;
  ::kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
  return j;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"imbench: load generator for imserver (loopback only)"};
  app.add_option("--scenario", o.scenario, "w1 w2 w3 w4 w5 w6 w7 w8 conv search")->required();
  app.add_option("--host", o.host, "server address (loopback)");
  app.add_option("--port", o.port, "server TCP port");
  app.add_option("--server-pid", o.server_pid, "server PID, for RSS and CPU from /proc");
  app.add_option("--secret", o.secret, "the server's auth.jwt_secret")->required();
  app.add_option("--threads", o.threads, "generator threads");
  app.add_option("--conns", o.conns, "W1/W5: connections");
  app.add_option("--pairs", o.pairs, "W2: sender/receiver pairs");
  app.add_option("--window", o.window, "W2/W3: unanswered SENDs per sender");
  app.add_option("--members", o.members, "W3, W7: group members");
  app.add_option("--online", o.online, "W7: members logged in");
  app.add_option("--senders", o.senders, "W3: members sending");
  app.add_option("--messages", o.messages, "W4, W8: messages waiting; W6: messages stored");
  app.add_option("--conversations", o.conversations, "conv: conversations of the listing user");
  app.add_option("--duration", o.duration_s, "seconds measured (W1: settle time)");
  app.add_option("--body-bytes", o.body_bytes, "message body size");
  app.add_option("--inflight", o.inflight, "W1/W5: handshakes in flight");
  app.add_option("--rate", o.rate, "W2/W3: total SENDs per second, paced (0: unpaced)");
  app.add_option("--source-addrs", o.source_addrs,
                 "connect from 127.0.0.2 .. 127.0.0.(N+1), ports 10000 and up (0: the kernel's choice)");
  app.add_option("--link-delay-ms", o.link_delay_ms, "W8: the link's delay, each way");
  app.add_option("--link-down-bytes-per-s", o.link_down_bytes_per_s, "W8: the link's rate towards the client");
  app.add_option("--imserver", o.imserver, "W6: the imserver binary");
  app.add_option("--config", o.config, "W6: its config");
  app.add_option("--data-dir", o.data_dir, "W6: its storage.data_dir; search: the server's, for the index's size");
  app.add_flag("--search-text", o.search_text, "W2/W3: every SEND carries a search_text");
  app.add_option("--run-id", o.run_id, "prefix of every uid of this run");
  app.add_option("--transport", o.transport, "W1-W5: tcp, ws, tls or wss (--port is that listener's port)");
  app.add_option("--ca-file", o.ca_file, "tls/wss: verify the server's certificate with this CA (default: no check)");
  CLI11_PARSE(app, argc, argv);
  const auto transport = im::parse_transport(o.transport);
  if (!transport) {
    std::cerr << "imbench: --transport must be tcp, ws, tls or wss\n";
    return 2;
  }
  if (o.scenario == "w6" && *transport != im::Transport::kTcp) {
    std::cerr << "imbench: w6 times a restart over tcp only: drop --transport\n";
    return 2;
  }
  if (!o.ca_file.empty() && !im::uses_tls(*transport)) {
    std::cerr << "imbench: --ca-file is for --transport tls or wss\n";
    return 2;
  }
  o.client.transport = *transport;
  if (im::uses_tls(*transport)) {
    try {
      o.client.tls =
          o.ca_file.empty() ? im::make_insecure_client_tls_context() : im::make_client_tls_context(o.ca_file);
    } catch (const std::exception& e) {
      std::cerr << "imbench: --ca-file " << o.ca_file << ": " << e.what() << "\n";
      return 2;
    }
  }
  asio::error_code ec;
  const auto addr = asio::ip::make_address(o.host, ec);
  if (ec || !addr.is_loopback()) {
    std::cerr << "imbench: --host must be a loopback address\n";
    return 2;
  }
  if (o.run_id.empty()) o.run_id = fmt::format("b{}-", ::getpid());
  std::signal(SIGPIPE, SIG_IGN);
  try {
    nlohmann::json j;
    if (o.scenario == "w1" || o.scenario == "w5")
      j = w1_or_w5(o);
    else if (o.scenario == "w2")
      j = w2(o);
    else if (o.scenario == "w3")
      j = w3(o);
    else if (o.scenario == "w4")
      j = w4(o);
    else if (o.scenario == "w6")
      j = w6(o);
    else if (o.scenario == "w7")
      j = w7(o);
    else if (o.scenario == "w8")
      j = w8(o);
    else if (o.scenario == "conv")
      j = conv(o);
    else if (o.scenario == "search")
      j = search_scenario(o);
    else
      throw std::runtime_error("unknown scenario " + o.scenario);
    print(j);
  } catch (const std::exception& e) {
    std::cerr << "imbench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
