#include "fault_env.h"

#include <rocksdb/env.h>
#include <rocksdb/file_system.h>
#include <rocksdb/io_status.h>

#include <atomic>
#include <string>
#include <string_view>
#include <utility>

namespace im::test {

struct FaultEnv::Switches {
  std::atomic<bool> fail_reads{false};
  std::atomic<bool> fail_writes{false};
  std::atomic<std::uint64_t> injected{0};

  bool read_fault() {
    if (!fail_reads.load(std::memory_order_acquire)) return false;
    injected.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  bool write_fault() {
    if (!fail_writes.load(std::memory_order_acquire)) return false;
    injected.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
};

namespace {

using rocksdb::FileOptions;
using rocksdb::FSRandomAccessFile;
using rocksdb::FSReadRequest;
using rocksdb::FSSequentialFile;
using rocksdb::FSWritableFile;
using rocksdb::IODebugContext;
using rocksdb::IOOptions;
using rocksdb::IOStatus;
using rocksdb::Slice;
using Switches = FaultEnv::Switches;

std::string_view basename(std::string_view path) {
  auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Table files: what a Get/iterator reads once the data left the memtable.
bool is_table_file(std::string_view path) {
  auto name = basename(path);
  return name.ends_with(".sst") || name.ends_with(".ldb") || name.ends_with(".blob");
}

// The info log ("LOG", "LOG.old.<time>", or "<dbname>_LOG" under
// db_log_dir). Never failed: RocksDB ignores its errors, and the Debian build
// (assertions on) aborts on the next log line after a failed one.
bool is_info_log(std::string_view path) {
  auto name = basename(path);
  return name.ends_with("LOG") || name.find("LOG.old") != std::string_view::npos;
}

IOStatus read_error(const std::string& fname) {
  return IOStatus::IOError("injected read fault", fname);
}

// What RocksDB's POSIX file system returns for ENOSPC (checked on a full
// tmpfs: PosixWritableFile::Append gives IOStatus::NoSpace, retryable).
IOStatus no_space(const std::string& fname) {
  IOStatus s = IOStatus::NoSpace("injected write fault: " + fname, "No space left on device");
  s.SetRetryable(true);
  return s;
}

class FaultRandomAccessFile final : public rocksdb::FSRandomAccessFileOwnerWrapper {
 public:
  FaultRandomAccessFile(std::unique_ptr<FSRandomAccessFile>&& file, std::string fname, std::shared_ptr<Switches> sw)
      : FSRandomAccessFileOwnerWrapper(std::move(file)), fname_(std::move(fname)), sw_(std::move(sw)) {}

  IOStatus Read(std::uint64_t offset, size_t n, const IOOptions& options, Slice* result, char* scratch,
                IODebugContext* dbg) const override {
    if (sw_->read_fault()) {
      *result = Slice();
      return read_error(fname_);
    }
    return FSRandomAccessFileOwnerWrapper::Read(offset, n, options, result, scratch, dbg);
  }

  IOStatus MultiRead(FSReadRequest* reqs, size_t num_reqs, const IOOptions& options, IODebugContext* dbg) override {
    if (sw_->read_fault()) {
      for (size_t i = 0; i < num_reqs; ++i) {
        reqs[i].result = Slice();
        reqs[i].status = read_error(fname_);
      }
      return read_error(fname_);
    }
    return FSRandomAccessFileOwnerWrapper::MultiRead(reqs, num_reqs, options, dbg);
  }

  // Like FSRandomAccessFile's default ReadAsync: completes at once, through
  // the callback.
  IOStatus ReadAsync(FSReadRequest& req, const IOOptions& opts, std::function<void(const FSReadRequest&, void*)> cb,
                     void* cb_arg, void** io_handle, rocksdb::IOHandleDeleter* del_fn, IODebugContext* dbg) override {
    if (sw_->read_fault()) {
      req.result = Slice();
      req.status = read_error(fname_);
      cb(req, cb_arg);
      return IOStatus::OK();
    }
    return FSRandomAccessFileOwnerWrapper::ReadAsync(req, opts, std::move(cb), cb_arg, io_handle, del_fn, dbg);
  }

 private:
  std::string fname_;
  std::shared_ptr<Switches> sw_;
};

class FaultSequentialFile final : public rocksdb::FSSequentialFileOwnerWrapper {
 public:
  FaultSequentialFile(std::unique_ptr<FSSequentialFile>&& file, std::string fname, std::shared_ptr<Switches> sw)
      : FSSequentialFileOwnerWrapper(std::move(file)), fname_(std::move(fname)), sw_(std::move(sw)) {}

  IOStatus Read(size_t n, const IOOptions& options, Slice* result, char* scratch, IODebugContext* dbg) override {
    if (sw_->read_fault()) {
      *result = Slice();
      return read_error(fname_);
    }
    return FSSequentialFileOwnerWrapper::Read(n, options, result, scratch, dbg);
  }

  IOStatus PositionedRead(std::uint64_t offset, size_t n, const IOOptions& options, Slice* result, char* scratch,
                          IODebugContext* dbg) override {
    if (sw_->read_fault()) {
      *result = Slice();
      return read_error(fname_);
    }
    return FSSequentialFileOwnerWrapper::PositionedRead(offset, n, options, result, scratch, dbg);
  }

 private:
  std::string fname_;
  std::shared_ptr<Switches> sw_;
};

class FaultWritableFile final : public rocksdb::FSWritableFileOwnerWrapper {
 public:
  FaultWritableFile(std::unique_ptr<FSWritableFile>&& file, std::string fname, std::shared_ptr<Switches> sw)
      : FSWritableFileOwnerWrapper(std::move(file)), fname_(std::move(fname)), sw_(std::move(sw)) {}

  IOStatus Append(const Slice& data, const IOOptions& options, IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::Append(data, options, dbg);
  }
  IOStatus Append(const Slice& data, const IOOptions& options, const rocksdb::DataVerificationInfo& info,
                  IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::Append(data, options, info, dbg);
  }
  IOStatus PositionedAppend(const Slice& data, std::uint64_t offset, const IOOptions& options,
                            IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, dbg);
  }
  IOStatus PositionedAppend(const Slice& data, std::uint64_t offset, const IOOptions& options,
                            const rocksdb::DataVerificationInfo& info, IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::PositionedAppend(data, offset, options, info, dbg);
  }
  // Flush is deliberately not failed: see fault_env.h.
  IOStatus Sync(const IOOptions& options, IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::Sync(options, dbg);
  }
  IOStatus Fsync(const IOOptions& options, IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::Fsync(options, dbg);
  }
  IOStatus RangeSync(std::uint64_t offset, std::uint64_t nbytes, const IOOptions& options,
                     IODebugContext* dbg) override {
    if (sw_->write_fault()) return no_space(fname_);
    return FSWritableFileOwnerWrapper::RangeSync(offset, nbytes, options, dbg);
  }

 private:
  std::string fname_;
  std::shared_ptr<Switches> sw_;
};

class FaultFileSystem final : public rocksdb::FileSystemWrapper {
 public:
  FaultFileSystem(const std::shared_ptr<rocksdb::FileSystem>& base, std::shared_ptr<Switches> sw)
      : FileSystemWrapper(base), sw_(std::move(sw)) {}

  static const char* kClassName() { return "ImTestFaultFileSystem"; }
  const char* Name() const override { return kClassName(); }

  IOStatus NewRandomAccessFile(const std::string& fname, const FileOptions& opts,
                               std::unique_ptr<FSRandomAccessFile>* result, IODebugContext* dbg) override {
    IOStatus s = target()->NewRandomAccessFile(fname, opts, result, dbg);
    if (s.ok() && is_table_file(fname)) {
      *result = std::make_unique<FaultRandomAccessFile>(std::move(*result), fname, sw_);
    }
    return s;
  }

  IOStatus NewSequentialFile(const std::string& fname, const FileOptions& opts,
                             std::unique_ptr<FSSequentialFile>* result, IODebugContext* dbg) override {
    IOStatus s = target()->NewSequentialFile(fname, opts, result, dbg);
    if (s.ok() && is_table_file(fname)) {
      *result = std::make_unique<FaultSequentialFile>(std::move(*result), fname, sw_);
    }
    return s;
  }

  IOStatus NewWritableFile(const std::string& fname, const FileOptions& opts, std::unique_ptr<FSWritableFile>* result,
                           IODebugContext* dbg) override {
    return wrap(fname, target()->NewWritableFile(fname, opts, result, dbg), result);
  }

  IOStatus ReopenWritableFile(const std::string& fname, const FileOptions& opts,
                              std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) override {
    return wrap(fname, target()->ReopenWritableFile(fname, opts, result, dbg), result);
  }

  // A full disk has no free space: while fail_writes is on this reports 0
  // bytes free. RocksDB's SstFileManager polls this before it retries
  // recovering from a NoSpace error, so it does not "recover" while the
  // fault is still on (it would with the real disk's free space).
  IOStatus GetFreeSpace(const std::string& path, const IOOptions& options, std::uint64_t* diskfree,
                        IODebugContext* dbg) override {
    if (sw_->fail_writes.load(std::memory_order_acquire)) {
      *diskfree = 0;
      return IOStatus::OK();
    }
    return target()->GetFreeSpace(path, options, diskfree, dbg);
  }

  IOStatus ReuseWritableFile(const std::string& fname, const std::string& old_fname, const FileOptions& opts,
                             std::unique_ptr<FSWritableFile>* result, IODebugContext* dbg) override {
    return wrap(fname, target()->ReuseWritableFile(fname, old_fname, opts, result, dbg), result);
  }

 private:
  IOStatus wrap(const std::string& fname, IOStatus s, std::unique_ptr<FSWritableFile>* result) {
    if (s.ok() && !is_info_log(fname)) {
      *result = std::make_unique<FaultWritableFile>(std::move(*result), fname, sw_);
    }
    return s;
  }

  std::shared_ptr<Switches> sw_;
};

}  // namespace

FaultEnv::FaultEnv()
    : switches_(std::make_shared<Switches>()),
      env_(rocksdb::NewCompositeEnv(std::make_shared<FaultFileSystem>(rocksdb::FileSystem::Default(), switches_))) {}

FaultEnv::~FaultEnv() = default;

rocksdb::Env* FaultEnv::env() {
  return env_.get();
}

void FaultEnv::fail_reads(bool on) {
  switches_->fail_reads.store(on, std::memory_order_release);
}

void FaultEnv::fail_writes(bool on) {
  switches_->fail_writes.store(on, std::memory_order_release);
}

std::uint64_t FaultEnv::injected() const {
  return switches_->injected.load(std::memory_order_relaxed);
}

}  // namespace im::test
