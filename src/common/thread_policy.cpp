#include "common/thread_policy.h"

#include <pthread.h>
#include <sched.h>

#include <cstring>

#include <fmt/format.h>

namespace im {

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

}  // namespace im
