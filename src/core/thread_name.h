// Names the calling thread, as top -H, gdb's "info threads", py-spy and /proc/<pid>/task/*/comm
// show it: a trainer's process holds dozens of threads (data loaders, the framework's pools), and
// whoever looks for what spins or what waits should see which are Lockstep's and what each does.
// The kernel keeps 15 characters.
#pragma once

#include <pthread.h>

namespace lockstep {

inline void nameThisThread(const char* name) { (void)pthread_setname_np(pthread_self(), name); }

}  // namespace lockstep
