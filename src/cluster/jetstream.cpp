#include "cluster/jetstream.h"

#include <algorithm>
#include <cstdint>
#include <limits>
#include <mutex>
#include <unordered_map>

#include <fmt/format.h>
#include <nats/nats.h>
#include <spdlog/spdlog.h>

namespace im::cluster {

namespace {

std::string status_text(natsStatus s, jsErrCode code = static_cast<jsErrCode>(0)) {
  std::string text = natsStatus_GetText(s);
  if (code != 0) text += fmt::format(" (JetStream error {})", static_cast<int>(code));
  // libnats keeps the server's own words (e.g. "maximum bytes exceeded") as the thread's last error.
  if (const char* last = nats_GetLastError(nullptr); last && *last && text.find(last) == std::string::npos)
    text += fmt::format(": {}", last);
  return text;
}

Error nats_error(std::string_view what, natsStatus s, jsErrCode code = static_cast<jsErrCode>(0)) {
  // 10008, 10009: no cluster or no leader yet (an election): passing.
  const StatusCode status = s == NATS_TIMEOUT || s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED ||
                                    s == NATS_NO_RESPONDERS || s == NATS_NOT_YET_CONNECTED ||
                                    code == JSClusterNotAvailErr || code == JSClusterNotLeaderErr
                                ? StatusCode::kUnavailable
                                : StatusCode::kInternal;
  return make_error(status, fmt::format("{}: {}", what, status_text(s, code)));
}

StreamState state_of(const jsStreamInfo& si) {
  StreamState st;
  st.first_seq = si.State.FirstSeq;
  st.last_seq = si.State.LastSeq;
  st.messages = si.State.Msgs;
  st.bytes = si.State.Bytes;
  st.created_ns = si.Created;
  if (si.Config) {
    st.replicas = static_cast<int>(si.Config->Replicas);
    st.max_bytes = si.Config->MaxBytes;
  }
  return st;
}

// What a failed publish means for the writer.
Published::Outcome outcome_of(natsStatus s, jsErrCode code, std::string_view text) {
  if (s == NATS_TIMEOUT) return Published::Outcome::kTimeout;
  if (code == JSStreamWrongLastSequenceErr) return Published::Outcome::kWrongLastSequence;
  // A stream at its MaxBytes with Discard=New answers "maximum bytes
  // exceeded" (store failed); a server out of its own file store answers
  // insufficient resources.
  // A Discard=New stream at its limit: store failed (10077, a generic code)
  // with these words (nats-server 2.9.10, measured); a server out of its
  // own store: insufficient resources (10023) or storage (10047).
  if (code == JSInsufficientResourcesErr || code == JSStorageResourcesExceededErr ||
      (code == JSStreamStoreFailedErr && (text.find("maximum bytes exceeded") != std::string_view::npos ||
                                          text.find("maximum messages exceeded") != std::string_view::npos)))
    return Published::Outcome::kFull;
  return Published::Outcome::kFailed;
}

}  // namespace

std::string_view to_string(Published::Outcome outcome) {
  switch (outcome) {
    case Published::Outcome::kStored: return "stored";
    case Published::Outcome::kDuplicate: return "duplicate";
    case Published::Outcome::kWrongLastSequence: return "wrong last sequence";
    case Published::Outcome::kFull: return "stream full";
    case Published::Outcome::kTimeout: return "timeout";
    case Published::Outcome::kFailed: return "failed";
    case Published::Outcome::kNotSent: return "not sent";
  }
  return "?";
}

bool fate_unknown(Published& p, bool& maybe_stored) {
  using Outcome = Published::Outcome;
  if (p.outcome == Outcome::kNotSent && maybe_stored) p.outcome = Outcome::kTimeout;
  const bool unknown = p.outcome == Outcome::kTimeout || p.outcome == Outcome::kFailed;
  maybe_stored = maybe_stored || unknown;
  return unknown;
}

struct JetStream::Impl {
  Options options;
  natsOptions* opts = nullptr;
  natsConnection* nc = nullptr;
  jsCtx* js = nullptr;
  // Each publish's `done`, by the message libnats hands back to the ack
  // handler (entered before the publish, so an early answer finds it).
  mutable std::mutex mutex;
  std::unordered_map<natsMsg*, Done> waiting;

  ~Impl() {
    if (js) {
      // Answers already on their way are let in (bounded), then the rest is failed below.
      jsPubOptions po;
      jsPubOptions_Init(&po);
      po.MaxWait = 1000;
      js_PublishAsyncComplete(js, &po);
      jsCtx_Destroy(js);
    }
    if (nc) {
      natsConnection_Close(nc);
      natsConnection_Destroy(nc);
    }
    if (opts) natsOptions_Destroy(opts);
    // Publishes still waiting are answered: their callers hold state.
    std::unordered_map<natsMsg*, Done> left;
    {
      std::lock_guard lock(mutex);
      left.swap(waiting);
    }
    for (auto& [msg, done] : left) done(Published{Published::Outcome::kNotSent, 0, "connection closed"});
  }

  Done take(natsMsg* msg) {
    std::lock_guard lock(mutex);
    auto it = waiting.find(msg);
    if (it == waiting.end()) return nullptr;
    Done done = std::move(it->second);
    waiting.erase(it);
    return done;
  }

  static void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
    auto* self = static_cast<Impl*>(closure);
    Done done = self->take(msg);
    Published p;
    if (pa) {
      p.outcome = pa->Duplicate ? Published::Outcome::kDuplicate : Published::Outcome::kStored;
      p.seq = pa->Sequence;
    } else if (pae) {
      p.error = pae->ErrText && *pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err);
      p.outcome = outcome_of(pae->Err, pae->ErrCode, p.error);
      if (pae->ErrCode != 0) p.error += fmt::format(" (JetStream error {})", static_cast<int>(pae->ErrCode));
    }
    natsMsg_Destroy(msg);
    if (done) done(p);
  }
};

JetStream::JetStream(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
JetStream::~JetStream() = default;

Result<std::unique_ptr<JetStream>> JetStream::connect(const Options& options) {
  if (options.urls.empty()) return make_error(StatusCode::kBadRequest, "no NATS server URL");
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  std::vector<const char*> urls;
  for (const auto& u : options.urls) urls.push_back(u.c_str());
  natsStatus s = natsOptions_Create(&impl->opts);
  if (s == NATS_OK) s = natsOptions_SetServers(impl->opts, urls.data(), static_cast<int>(urls.size()));
  if (s == NATS_OK) s = natsOptions_SetName(impl->opts, options.name.c_str());
  if (s == NATS_OK) s = natsOptions_SetTimeout(impl->opts, options.connect_wait.count());
  // A NATS server going away is expected in a cluster: reconnect to any
  // other, for ever, without randomising (the order given is tried).
  if (s == NATS_OK) s = natsOptions_SetMaxReconnect(impl->opts, -1);
  if (s == NATS_OK) s = natsOptions_SetReconnectWait(impl->opts, 100);
  if (s == NATS_OK) s = natsOptions_SetNoRandomize(impl->opts, true);
  if (s != NATS_OK) return nats_error("NATS options", s);
  s = natsConnection_Connect(&impl->nc, impl->opts);
  if (s != NATS_OK) return nats_error(fmt::format("connecting to {}", fmt::join(options.urls, ",")), s);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options.api_wait.count();
  jo.PublishAsync.MaxPending = options.max_pending;
  jo.PublishAsync.AckHandler = &Impl::on_ack;
  jo.PublishAsync.AckHandlerClosure = impl.get();
  s = natsConnection_JetStream(&impl->js, impl->nc, &jo);
  if (s != NATS_OK) return nats_error("JetStream context", s);
  return std::unique_ptr<JetStream>(new JetStream(std::move(impl)));
}

Result<StreamState> JetStream::stream_state(const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code{};
  natsStatus s = js_GetStreamInfo(&si, impl_->js, stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return make_error(StatusCode::kNotFound, "no stream " + stream);
  if (s != NATS_OK) return nats_error("stream info of " + stream, s, code);
  StreamState st = state_of(*si);
  jsStreamInfo_Destroy(si);
  return st;
}

Result<Ok> JetStream::delete_stream(const std::string& stream) {
  jsErrCode code{};
  natsStatus s = js_DeleteStream(impl_->js, stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND || code == JSStreamNotFoundErr) return Ok{};
  if (s != NATS_OK) return nats_error("deleting stream " + stream, s, code);
  return Ok{};
}

Result<Ok> JetStream::purge(const std::string& stream, std::uint64_t keep_from, const std::string& subject) {
  if (subject.empty() && keep_from <= 1) return Ok{};
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = impl_->options.api_wait.count();
  o.Stream.Purge.Sequence = keep_from;  // "up to but not including"; 0: no bound
  if (!subject.empty()) o.Stream.Purge.Subject = subject.c_str();
  jsErrCode code{};
  natsStatus s = js_PurgeStream(impl_->js, stream.c_str(), &o, &code);
  if (s != NATS_OK) return nats_error(fmt::format("purging stream {} below {}", stream, keep_from), s, code);
  return Ok{};
}

Result<std::map<std::string, std::uint64_t>> JetStream::subjects(const std::string& stream, const std::string& filter) {
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = impl_->options.api_wait.count();
  o.Stream.Info.SubjectsFilter = filter.c_str();
  jsStreamInfo* si = nullptr;
  jsErrCode code{};
  natsStatus s = js_GetStreamInfo(&si, impl_->js, stream.c_str(), &o, &code);
  if (s == NATS_NOT_FOUND) return make_error(StatusCode::kNotFound, "no stream " + stream);
  if (s != NATS_OK) return nats_error("the subjects of " + stream, s, code);
  std::map<std::string, std::uint64_t> out;
  if (si->State.Subjects)
    for (int i = 0; i < si->State.Subjects->Count; ++i)
      out.emplace(si->State.Subjects->List[i].Subject, si->State.Subjects->List[i].Msgs);
  jsStreamInfo_Destroy(si);
  return out;
}

Result<std::optional<Entry>> JetStream::last_on_subject(const std::string& stream, const std::string& subject) {
  natsMsg* msg = nullptr;
  jsErrCode code{};
  natsStatus s = js_GetLastMsg(&msg, impl_->js, stream.c_str(), subject.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND || code == JSNoMessageFoundErr) return std::optional<Entry>{};
  if (s != NATS_OK) return nats_error(fmt::format("the last entry of {} on {}", stream, subject), s, code);
  Entry e;
  e.seq = natsMsg_GetSequence(msg);
  e.data.assign(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
  natsMsg_Destroy(msg);
  return std::optional<Entry>(std::move(e));
}

Result<StreamState> JetStream::ensure_stream(const StreamSpec& spec) {
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {spec.subject.c_str()};
  cfg.Name = spec.name.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = spec.replicas;
  cfg.Discard = js_DiscardNew;
  cfg.MaxBytes = spec.max_bytes;
  cfg.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(spec.duplicates_window).count();
  cfg.DenyDelete = true;  // entries are the log: nobody removes one from the middle
  // Trimming purges a stream's head below a snapshot (docs/cluster.md).
  cfg.DenyPurge = false;

  jsStreamInfo* si = nullptr;
  jsErrCode code{};
  natsStatus s = js_GetStreamInfo(&si, impl_->js, spec.name.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) {
    s = js_AddStream(&si, impl_->js, &cfg, nullptr, &code);
    if (s != NATS_OK) return nats_error("creating stream " + spec.name, s, code);
  } else if (s != NATS_OK) {
    return nats_error("stream info of " + spec.name, s, code);
  } else {
    const jsStreamConfig* have = si->Config;
    if (!have || have->SubjectsLen != 1 || spec.subject != have->Subjects[0] || have->Storage != js_FileStorage ||
        have->Discard != js_DiscardNew) {
      jsStreamInfo_Destroy(si);
      return make_error(StatusCode::kInternal,
                        fmt::format("stream {} exists with another layout (subject, storage or discard policy); "
                                    "it was not made by this imserver",
                                    spec.name));
    }
    // nats-server drops a stream's oldest entries to meet a lowered limit,
    // whatever its discard policy: never below what the stream holds.
    if (spec.max_bytes >= 0 && si->State.Bytes > static_cast<std::uint64_t>(spec.max_bytes) &&
        (have->MaxBytes < 0 || have->MaxBytes > spec.max_bytes)) {
      const std::uint64_t held = si->State.Bytes;
      jsStreamInfo_Destroy(si);
      return make_error(StatusCode::kInternal,
                        fmt::format("stream {} holds {} bytes, more than the limit of {} it would be given: NATS "
                                    "would drop its oldest entries; raise the limit (or trim the stream first)",
                                    spec.name, held, spec.max_bytes));
    }
    if (have->Replicas != spec.replicas || have->MaxBytes != spec.max_bytes || have->Duplicates != cfg.Duplicates) {
      jsStreamInfo_Destroy(si);
      si = nullptr;
      s = js_UpdateStream(&si, impl_->js, &cfg, nullptr, &code);
      if (s != NATS_OK) return nats_error("updating stream " + spec.name, s, code);
    }
  }
  StreamState st = state_of(*si);
  jsStreamInfo_Destroy(si);
  return st;
}

void JetStream::publish(const std::string& subject, std::string_view data, const std::string& msg_id,
                        std::uint64_t expect_last_seq, std::chrono::milliseconds max_wait, Done done) {
  natsMsg* msg = nullptr;
  natsStatus s = natsMsg_Create(&msg, subject.c_str(), nullptr, data.data(), static_cast<int>(data.size()));
  // libnats sets the expected sequence only when it is not 0; an empty
  // stream is expected with an explicit 0, which the server checks too.
  const std::string expect = std::to_string(expect_last_seq);
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Msg-Id", msg_id.c_str());
  if (s == NATS_OK) s = natsMsgHeader_Set(msg, "Nats-Expected-Last-Sequence", expect.c_str());
  if (s != NATS_OK) {
    natsMsg_Destroy(msg);
    return done(Published{Published::Outcome::kNotSent, 0, status_text(s)});
  }
  natsMsg* key = msg;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->waiting.emplace(key, std::move(done));
  }
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = max_wait.count();
  s = js_PublishMsgAsync(impl_->js, &msg, &po);
  if (s != NATS_OK) {
    // Not queued: the message is still ours and no ack will come. Its
    // entry goes before the message, whose address a new one may take.
    Done d = impl_->take(key);
    natsMsg_Destroy(msg);
    if (d) d(Published{Published::Outcome::kNotSent, 0, status_text(s), s == NATS_MAX_PAYLOAD});
  }
}

Result<std::vector<Entry>> JetStream::read(const std::string& stream, const std::string& subject,
                                           std::uint64_t from_seq, std::size_t max, std::size_t max_bytes) {
  std::vector<Entry> out;
  if (max == 0) return out;
  // Read up to the end the stream has now: a fetch at the end would wait
  // for its whole expiry, NoWait or not.
  auto state = stream_state(stream);
  if (!state) return state.error();
  const std::uint64_t from = std::max<std::uint64_t>(from_seq, 1);
  if (from > state->last_seq) return out;
  max = static_cast<std::size_t>(std::min<std::uint64_t>(max, state->last_seq - from + 1));
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Config.DeliverPolicy = js_DeliverByStartSequence;
  so.Config.OptStartSeq = from;
  so.Config.AckPolicy = js_AckNone;
  so.Config.InactiveThreshold = std::chrono::nanoseconds(std::chrono::seconds(30)).count();
  natsSubscription* sub = nullptr;
  jsErrCode code{};
  natsStatus s = js_PullSubscribe(&sub, impl_->js, subject.c_str(), nullptr, nullptr, &so, &code);
  if (s != NATS_OK) return nats_error("reading stream " + stream, s, code);
  Result<std::vector<Entry>> result = std::move(out);
  std::size_t bytes = 0;
  // With a byte limit the first fetch takes one entry, whatever its size;
  // the servers stop the next ones at what the limit leaves (they count an
  // entry's subject and headers too, so the data stays below it).
  const bool capped = max_bytes != kNoByteLimit;
  while (result->size() < max &&
         (result->empty() || (bytes < max_bytes && result->back().seq < state->last_seq))) {
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = static_cast<int>(std::min<std::size_t>(max - result->size(), 256));
    if (capped && result->empty()) req.Batch = 1;
    if (capped && !result->empty())
      req.MaxBytes = static_cast<std::int64_t>(
          std::min<std::size_t>(max_bytes - bytes, static_cast<std::size_t>(std::numeric_limits<std::int64_t>::max())));
    req.NoWait = true;  // what the stream holds now, not what comes later
    req.Expires = std::chrono::nanoseconds(impl_->options.api_wait).count();
    natsMsgList list{};
    s = natsSubscription_FetchRequest(&list, sub, &req);
    if (s == NATS_NOT_FOUND || s == NATS_TIMEOUT || (s == NATS_OK && list.Count == 0)) {
      natsMsgList_Destroy(&list);
      break;  // the stream's end
    }
    if (s != NATS_OK) {
      natsMsgList_Destroy(&list);
      // A capped fetch whose next entry is larger than what the limit
      // leaves is refused (409; libnats 3.4 answers NATS_ERR), and a late
      // status of an earlier fetch on the same subscription can end this
      // one: the read ends there, short, and its caller reads on. A real
      // error shows again on the next read, whose first fetch is not capped.
      if (capped && !result->empty()) {
        spdlog::debug("reading stream {}: a fetch ended at entry {}: {}", stream, result->back().seq,
                      natsStatus_GetText(s));
      } else {
        result = nats_error("reading stream " + stream, s);
      }
      break;
    }
    for (int i = 0; i < list.Count; ++i) {
      jsMsgMetaData* meta = nullptr;
      if (natsMsg_GetMetaData(&meta, list.Msgs[i]) != NATS_OK) continue;
      Entry e;
      e.seq = meta->Sequence.Stream;
      jsMsgMetaData_Destroy(meta);
      e.data.assign(natsMsg_GetData(list.Msgs[i]), static_cast<std::size_t>(natsMsg_GetDataLength(list.Msgs[i])));
      bytes += e.data.size();
      result->push_back(std::move(e));
    }
    natsMsgList_Destroy(&list);
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return result;
}

std::int64_t JetStream::max_payload() const {
  return natsConnection_GetMaxPayload(impl_->nc);
}

std::size_t JetStream::pending() const {
  std::lock_guard lock(impl_->mutex);
  return impl_->waiting.size();
}

}  // namespace im::cluster
