#pragma once
// Start-up: every fan-out a crash left unfinished is finished before any
// traffic, exactly (docs/architecture.md, "Recovery"). A C2C copy record
// is written and deleted in one batch; a group record's chains resume from
// their progress rows, and the record goes only once every chain is
// written. A write that fails keeps its record, and start-up fails so that
// a later start finishes it.

#include "core/core_env.h"

namespace im::core {

// Runs on the caller's thread while the shards run; throws
// std::runtime_error when a record could not be finished.
void recover_fanouts(CoreEnv& env);

}  // namespace im::core
