#include "common/thread_policy.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace im {

namespace {

// SCHED_BATCH for `thread` if it has the default policy; "" once switched,
// else why not.
std::string schedule_as_batch(std::thread& thread) {
  int policy = 0;
  sched_param param{};
  if (const int error = pthread_getschedparam(thread.native_handle(), &policy, &param))
    return fmt::format("keeps its scheduling policy: {}", std::strerror(error));
  if (policy != SCHED_OTHER) return fmt::format("keeps the scheduling policy it was started with ({})", policy);
  param.sched_priority = 0;  // the only one SCHED_BATCH takes
  if (const int error = pthread_setschedparam(thread.native_handle(), SCHED_BATCH, &param))
    return fmt::format("keeps the default scheduling policy: {}", std::strerror(error));
  return {};
}

}  // namespace

void set_up_busy_thread(std::thread& thread, const std::string& name, bool batch) {
  pthread_setname_np(thread.native_handle(), name.c_str());
  if (!batch) return;
  if (const std::string why = schedule_as_batch(thread); !why.empty()) spdlog::warn("{}: {}", name, why);
}

}  // namespace im
