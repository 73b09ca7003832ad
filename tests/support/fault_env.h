#pragma once
// A test-only RocksDB environment that fails storage I/O on demand, built
// only on RocksDB's public API (rocksdb::FileSystemWrapper + NewCompositeEnv).
//
// Reads: while fail_reads is on, every read of a table file (*.sst, and the
// legacy *.ldb / blob *.blob) through a RandomAccessFile (Read, MultiRead,
// ReadAsync) or a SequentialFile (Read, PositionedRead) returns
// IOStatus::IOError. WAL, MANIFEST, CURRENT and OPTIONS reads are never
// failed, so a DB opened while the switch is off opens normally, and a
// Get/iterator fails only when it has to touch an SST block that is not in
// the block cache (data still in the memtable keeps being served).
//
// Writes: while fail_writes is on, every WritableFile Append /
// PositionedAppend / Sync / Fsync / RangeSync returns IOStatus::NoSpace
// ("No space left on device", marked retryable like RocksDB's POSIX ENOSPC).
// That covers the WAL, SST files written by flush/compaction, and the
// MANIFEST/CURRENT/OPTIONS files (a full disk does not pick). Not failed:
//  - the info LOG: RocksDB ignores its errors, and the Debian build (asserts
//    on) aborts the process on the next log line after a failed one;
//  - FSWritableFile::Flush, Close, Truncate: POSIX Flush is a no-op that
//    never returns ENOSPC. Failing it makes RocksDB's memtable switch
//    (a flush, or a Resume while the fault is on) flush the old WAL's empty
//    buffer, fail, and escalate to kFatalError (reason kMemTable), a state
//    only a reopen clears and that a real full disk does not produce.
// While fail_writes is on, GetFreeSpace reports 0 bytes free, so RocksDB's
// SstFileManager (which polls it, every 5 s, before retrying recovery from a
// NoSpace error) does not recover while the "disk" is still full.
//
// The two switches are independent at the file level: fail_reads never
// fails a write and fail_writes never fails a read. RocksDB itself links
// them: a flush or compaction reads table files (a flush reads back the SST
// it just wrote), so one running while fail_reads is on fails, and RocksDB
// 7.8 records that as a kFatalError background error that refuses every
// write until the DB is reopened (measured). Keep fail_reads windows free of
// flushes/compactions (small memtables in tests do not flush on their own).
// Both switches are atomics: flip them from any thread, with the DB open.
// Opening files never fails; keep fail_reads off while opening a DB (it
// reads its SSTs' footers and indexes then).
//
// Must outlive every DB that uses env().

#include <cstdint>
#include <memory>

namespace rocksdb {
class Env;
}  // namespace rocksdb

namespace im::test {

class FaultEnv {
 public:
  FaultEnv();  // wraps rocksdb::FileSystem::Default()
  ~FaultEnv();
  FaultEnv(const FaultEnv&) = delete;
  FaultEnv& operator=(const FaultEnv&) = delete;

  rocksdb::Env* env();  // pass to rocksdb options.env (outlives the DB)
  void fail_reads(bool on);
  void fail_writes(bool on);
  // How many operations have been failed so far (reads and writes).
  std::uint64_t injected() const;

  struct Switches;  // the shared atomics (fault_env.cpp)

 private:
  std::shared_ptr<Switches> switches_;
  std::unique_ptr<rocksdb::Env> env_;
};

}  // namespace im::test
