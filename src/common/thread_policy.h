#pragma once
// How the server's busy threads are scheduled.
//
// An I/O loop and a core shard hand each other work all the time: a SEND
// goes from the loop to the shard, its answer and PUSH come back. Under
// Linux's default policy a woken thread preempts the one running on its
// CPU, so on a busy core each hand-off was two context switches: the shard
// ran for one posted SEND, slept, and the loop went on (about 22,000 of
// each a second at 30,000 paced messages/s, bench/ANALYSIS.md, "Hand-offs
// without preemption"). Under SCHED_BATCH a woken thread does not preempt:
// it runs when the other sleeps, or on another CPU, and takes everything
// posted meanwhile in one go. The nice value stays.

#include <string>
#include <thread>

namespace im {

// Names a loop's or shard's thread (at most 15 characters) and, with
// `batch`, puts it under SCHED_BATCH if it runs under the default policy
// (SCHED_OTHER, inherited from the thread that made it); a policy the
// operator chose (`chrt`, systemd's CPUSchedulingPolicy=) is kept, and
// the log says why. Called from the thread that started it, so both are in
// place before start() returns.
void set_up_busy_thread(std::thread& thread, const std::string& name, bool batch);

}  // namespace im
