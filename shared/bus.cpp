#include "shared/bus.h"

#include <spdlog/spdlog.h>

#include <cstdlib>
#include <cstring>

#include "shared/nats_auth.h"
#include "shared/util.h"

#include <algorithm>
#include <thread>

namespace bulwark {
namespace {

constexpr const char* kErrCode = "Bulwark-Error-Code";
constexpr const char* kErrMessage = "Bulwark-Error-Message";
constexpr const char* kErrField = "Bulwark-Error-Field";

std::string last_error_detail(natsStatus s) {
  std::string detail = natsStatus_GetText(s);
  const char* txt = nats_GetLastError(nullptr);
  if (txt && *txt && detail.find(txt) == std::string::npos) detail += std::string(" (") + txt + ")";
  return detail;
}

// Header values must be one line.
std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\r' || c == '\n') c = ' ';
  return s;
}

void on_handler_msg(natsConnection*, natsSubscription*, natsMsg* raw, void* closure) {
  Msg m(raw);
  auto* h = static_cast<Handler*>(closure);
  try {
    (*h)(m);
  } catch (const std::exception& e) {
    // A handler must never take the delivery thread down; log with the subject for context.
    spdlog::error("handler for {} failed: {}", m.subject(), e.what());
  }
}

// Operator mode: libnats asks for the user JWT and a signature of the server's nonce on every
// (re)connect. The credentials may be a file's text (libnats 3.4 only reads them from files).
natsStatus user_jwt_cb(char** jwt, char**, void* closure) {
  *jwt = strdup(static_cast<const std::string*>(closure)->c_str());
  return *jwt ? NATS_OK : NATS_NO_MEMORY;
}

}  // namespace

natsStatus NonceSigner::callback(char** err, unsigned char** sig, int* len, const char* nonce, void* signer) {
  auto* self = static_cast<NonceSigner*>(signer);
  natsStatus s = nats_Sign(self->seed.c_str(), nonce, sig, len);  // malloc'ed, libnats frees it
  if (s != NATS_OK || *len < 1 || (*sig)[0] != 0) return s;
  std::free(*sig);
  *sig = nullptr;
  *len = 0;
  self->refused.fetch_add(1);
  *err = strdup("this nonce's signature starts with a zero byte, which libnats < 3.8 would not send (nats.c#705); "
                "trying again with a new nonce");
  return NATS_ERR;
}

natsStatus NonceSigner::connect(natsConnection** nc, natsOptions* o) {
  natsStatus s = NATS_OK;
  for (int i = 0; i < 16; ++i) {
    s = natsConnection_Connect(nc, o);
    if (s == NATS_OK || refused.exchange(0) == 0) break;
  }
  return s;
}

namespace {

void on_disconnected(natsConnection* nc, void*) {
  if (!natsConnection_IsClosed(nc) && !natsConnection_IsDraining(nc)) spdlog::warn("NATS connection lost; reconnecting");
}
void on_reconnected(natsConnection* nc, void*) {
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof url);
  spdlog::info("NATS reconnected to {}", url);
}

}  // namespace

namespace {
// The Error check_nats throws, built without throwing: for callers that must read libnats' last
// error before another call replaces it.
Error nats_error(natsStatus s, const std::string& what) {
  Code code = Code::kInternal;
  if (s == NATS_NO_RESPONDERS || s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED ||
      s == NATS_CONNECTION_DISCONNECTED || s == NATS_NOT_YET_CONNECTED)
    code = Code::kUnavailable;
  if (s == NATS_TIMEOUT) code = Code::kTimeout;
  return Error(code, what + ": " + last_error_detail(s));
}
}  // namespace

void check_nats(natsStatus s, const std::string& what) {
  if (s != NATS_OK) throw nats_error(s, what);
}

std::string_view Msg::subject() const { return natsMsg_GetSubject(m_.get()); }
std::string_view Msg::data() const {
  return {natsMsg_GetData(m_.get()), static_cast<size_t>(natsMsg_GetDataLength(m_.get()))};
}
const char* Msg::reply() const { return natsMsg_GetReply(m_.get()); }
std::optional<std::string> Msg::header(const char* key) const {
  const char* v = nullptr;
  if (natsMsgHeader_Get(m_.get(), key, &v) != NATS_OK || v == nullptr) return std::nullopt;
  return std::string(v);
}
void Msg::throw_if_error() const {
  auto code = header(kErrCode);
  if (!code) return;
  throw Error(code_from_name(*code), header(kErrMessage).value_or(*code), header(kErrField).value_or(""));
}
uint64_t Msg::stream_seq() const {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, m_.get()) != NATS_OK || !meta) return 0;
  uint64_t seq = meta->Sequence.Stream;
  jsMsgMetaData_Destroy(meta);
  return seq;
}
void Msg::ack() { check_nats(natsMsg_Ack(m_.get(), nullptr), "ack " + std::string(subject())); }

Subscription::~Subscription() {
  if (sub_) natsSubscription_Unsubscribe(sub_.get());  // may fail after drain; nothing to do then
}

std::unique_ptr<Bus> Bus::connect(const Options& opts) {
  natsOptions* raw = nullptr;
  check_nats(natsOptions_Create(&raw), "nats options");
  NatsPtr<natsOptions> o(raw);
  check_nats(natsOptions_SetURL(o.get(), opts.url.c_str()), "NATS URL '" + opts.url + "'");
  if (!opts.name.empty()) natsOptions_SetName(o.get(), opts.name.c_str());
  natsOptions_SetMaxReconnect(o.get(), -1);  // never give up once connected
  natsOptions_SetReconnectWait(o.get(), 250);
  natsOptions_SetTimeout(o.get(), 2000);
  // Send each message at once instead of letting libnats hold it ~1 ms for batching: every
  // request, reply and ack of the control plane is on someone's critical path.
  natsOptions_SetSendAsap(o.get(), true);
  natsOptions_SetDisconnectedCB(o.get(), on_disconnected, nullptr);
  natsOptions_SetReconnectedCB(o.get(), on_reconnected, nullptr);

  auto bus = std::make_unique<Bus>(Key{});
  bus->url_ = opts.url;
  if (!opts.creds.empty()) {
    auto c = nats_auth::parse_creds(opts.creds.starts_with("-----BEGIN")
                                        ? opts.creds
                                        : nats_auth::read_text_file(opts.creds, "nats-creds"));
    bus->creds_ = std::make_unique<UserCreds>();
    bus->creds_->jwt = std::move(c.jwt);
    bus->creds_->signer.seed = std::move(c.seed);
    check_nats(natsOptions_SetUserCredentialsCallbacks(o.get(), user_jwt_cb, &bus->creds_->jwt, NonceSigner::callback,
                                                       &bus->creds_->signer),
               "NATS credentials");
  }
  if (!opts.ca_file.empty()) {
    bus->ca_pem_ = opts.ca_file.starts_with("-----BEGIN") ? opts.ca_file : nats_auth::read_text_file(opts.ca_file, "nats-ca");
    check_nats(natsOptions_SetSecure(o.get(), true), "NATS TLS");
    check_nats(natsOptions_SetCATrustedCertificates(o.get(), bus->ca_pem_.c_str()),
               "NATS CA " + (opts.ca_file.starts_with("-----BEGIN") ? std::string("certificate") : opts.ca_file) +
                   " (--nats-ca)");
  }
  if (!opts.inbox_prefix.empty()) {
    check_nats(natsOptions_SetCustomInboxPrefix(o.get(), opts.inbox_prefix.c_str()), "NATS inbox prefix");
    bus->inbox_prefix_ = opts.inbox_prefix;
  }
  auto deadline = std::chrono::steady_clock::now() + opts.connect_timeout;
  natsStatus s;
  for (;;) {
    natsConnection* nc = nullptr;
    s = bus->creds_ ? bus->creds_->signer.connect(&nc, o.get()) : natsConnection_Connect(&nc, o.get());
    if (s == NATS_OK) {
      bus->nc_.reset(nc);
      return bus;
    }
    // Refused (or missing) credentials will not improve by retrying.
    if (s == NATS_NOT_PERMITTED || s == NATS_CONNECTION_AUTH_FAILED)
      throw Error(Code::kPermissionDenied,
                  "NATS at " + opts.url + " refused the credentials: " + last_error_detail(s) +
                      (opts.creds.empty() ? "; it wants a user: give --nats-creds (BULWARK_NATS_CREDS)"
                                          : "; check --nats-creds (BULWARK_NATS_CREDS)"),
                  "nats-creds");
    if (std::chrono::steady_clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  throw Error(Code::kUnavailable, "cannot connect to NATS at " + opts.url + ": " +
                                      last_error_detail(s) +
                                      "; start nats-server (scripts/up does) or set BULWARK_NATS_URL");
}

Bus::~Bus() {
  if (nc_ && !drained_) natsConnection_Close(nc_.get());
}

void Bus::publish(const std::string& subject, std::string_view data) {
  check_nats(natsConnection_Publish(nc_.get(), subject.c_str(), data.data(), static_cast<int>(data.size())),
             "publish " + subject);
}
void Bus::publish(const std::string& subject, const google::protobuf::Message& m) {
  publish(subject, m.SerializeAsString());
}
void Bus::publish(const std::string& subject, const std::string& reply, std::string_view data) {
  check_nats(natsConnection_PublishRequest(nc_.get(), subject.c_str(), reply.c_str(), data.data(),
                                           static_cast<int>(data.size())),
             "publish " + subject);
}
std::string Bus::new_inbox() const { return inbox_prefix_ + "." + random_hex(11); }
int64_t Bus::max_payload() const { return natsConnection_GetMaxPayload(nc_.get()); }

Subscription Bus::make_sub(const std::string& subject, const std::string* queue, Handler h) {
  auto handler = std::make_unique<Handler>(std::move(h));
  natsSubscription* sub = nullptr;
  natsStatus s = queue ? natsConnection_QueueSubscribe(&sub, nc_.get(), subject.c_str(), queue->c_str(),
                                                       on_handler_msg, handler.get())
                       : natsConnection_Subscribe(&sub, nc_.get(), subject.c_str(), on_handler_msg, handler.get());
  check_nats(s, "subscribe " + subject);
  // Slow consumers must not silently drop requests: allow a deep backlog per subscription.
  natsSubscription_SetPendingLimits(sub, 65536, 256 * 1024 * 1024);
  return Subscription(NatsPtr<natsSubscription>(sub), std::move(handler));
}
Subscription Bus::subscribe(const std::string& subject, Handler h) { return make_sub(subject, nullptr, std::move(h)); }
Subscription Bus::queue_subscribe(const std::string& subject, const std::string& queue, Handler h) {
  return make_sub(subject, &queue, std::move(h));
}

Msg Bus::request(const std::string& subject, std::string_view data, std::chrono::milliseconds timeout) {
  natsMsg* reply = nullptr;
  natsStatus s = natsConnection_Request(&reply, nc_.get(), subject.c_str(), data.data(),
                                        static_cast<int>(data.size()), timeout.count());
  if (s == NATS_NO_RESPONDERS) throw NoResponders(subject);
  if (s == NATS_TIMEOUT)
    throw Error(Code::kTimeout, "no reply on " + subject + " within " + std::to_string(timeout.count()) + " ms");
  check_nats(s, "request " + subject);
  Msg m(reply);
  m.throw_if_error();
  return m;
}

void Bus::respond(const Msg& req, const google::protobuf::Message& reply) {
  if (!req.reply()) return;  // a publish, not a request: nobody to answer
  std::string data = reply.SerializeAsString();
  check_nats(natsConnection_Publish(nc_.get(), req.reply(), data.data(), static_cast<int>(data.size())),
             "reply on " + std::string(req.subject()));
}

void Bus::respond_error(const Msg& req, const Error& e) {
  if (!req.reply()) return;
  natsMsg* raw = nullptr;
  check_nats(natsMsg_Create(&raw, req.reply(), nullptr, nullptr, 0), "create error reply");
  NatsPtr<natsMsg> m(raw);
  natsMsgHeader_Set(m.get(), kErrCode, code_name(e.code()));
  natsMsgHeader_Set(m.get(), kErrMessage, one_line(e.what()).c_str());
  if (!e.field().empty()) natsMsgHeader_Set(m.get(), kErrField, e.field().c_str());
  check_nats(natsConnection_PublishMsg(nc_.get(), m.get()), "error reply on " + std::string(req.subject()));
}

void Bus::reply_with(const Msg& req, const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    respond_error(req, e);
  } catch (const std::exception& e) {
    spdlog::error("request on {} failed: {}", req.subject(), e.what());
    respond_error(req, Error(Code::kInternal, e.what()));
  }
}

jsCtx* Bus::js() {
  if (!js_) {
    jsCtx* ctx = nullptr;
    check_nats(natsConnection_JetStream(&ctx, nc_.get(), nullptr), "JetStream context");
    js_.reset(ctx);
  }
  return js_.get();
}

void Bus::ensure_stream(const std::string& name, const std::vector<std::string>& subjects,
                        std::chrono::seconds max_age) {
  std::vector<const char*> subj;
  for (const auto& s : subjects) subj.push_back(s.c_str());
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = name.c_str();
  cfg.Subjects = subj.data();
  cfg.SubjectsLen = static_cast<int>(subj.size());
  cfg.Storage = js_FileStorage;
  cfg.MaxAge = std::chrono::duration_cast<std::chrono::nanoseconds>(max_age).count();
  jsStreamInfo* si = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_AddStream(&si, js(), &cfg, nullptr, &jerr);
  if (s != NATS_OK && jerr == JSStreamNameExistErr) s = js_UpdateStream(&si, js(), &cfg, nullptr, &jerr);
  if (si) jsStreamInfo_Destroy(si);
  if (s != NATS_OK)
    check_nats(s, "create JetStream stream " + name + " (is nats-server running with -js?) js error " +
                      std::to_string(static_cast<int>(jerr)));
}

void Bus::js_publish(const std::string& subject, const google::protobuf::Message& m,
                     std::chrono::milliseconds timeout) {
  std::string data = m.SerializeAsString();
  auto deadline = std::chrono::steady_clock::now() + timeout;
  jsPubOptions po;
  jsPubOptions_Init(&po);
  po.MaxWait = 2000;
  for (;;) {
    jsErrCode jerr = static_cast<jsErrCode>(0);
    natsStatus s = js_Publish(nullptr, js(), subject.c_str(), data.data(), static_cast<int>(data.size()), &po, &jerr);
    if (s == NATS_OK) return;
    if (std::chrono::steady_clock::now() >= deadline)
      throw Error(Code::kUnavailable, "could not persist " + m.GetTypeName() + " on " + subject + ": " +
                                          last_error_detail(s) + " (is the gateway running? it creates the stream)");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

Subscription Bus::js_durable_subscribe(const std::string& stream, const std::string& durable,
                                       const std::string& filter, Handler h) {
  // The consumer is created here, not by js_Subscribe: libnats deletes a consumer it created itself
  // when the subscription ends, and this one must outlive the process.
  std::string deliver = "_bulwark.deliver." + stream + "." + durable;
  jsConsumerInfo* ci = nullptr;
  jsErrCode jerr = static_cast<jsErrCode>(0);
  natsStatus s = js_GetConsumerInfo(&ci, js(), stream.c_str(), durable.c_str(), nullptr, &jerr);
  if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable.c_str();
    cc.DeliverSubject = deliver.c_str();
    cc.FilterSubject = filter.c_str();
    cc.AckPolicy = js_AckExplicit;
    cc.DeliverPolicy = js_DeliverAll;
    cc.AckWait = 30LL * 1000 * 1000 * 1000;
    cc.MaxAckPending = 10000;
    s = js_AddConsumer(&ci, js(), stream.c_str(), &cc, nullptr, &jerr);
  }
  if (ci) jsConsumerInfo_Destroy(ci);
  check_nats(s, "durable consumer " + durable + " on stream " + stream + " (js error " +
                    std::to_string(static_cast<int>(jerr)) + ")");

  auto handler = std::make_unique<Handler>(std::move(h));
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Consumer = durable.c_str();  // bind to the consumer above
  so.ManualAck = true;
  natsSubscription* sub = nullptr;
  s = js_Subscribe(&sub, js(), filter.c_str(), on_handler_msg, handler.get(), nullptr, &so, &jerr);
  check_nats(s, "subscribe to durable " + durable + " on " + stream + " (js error " + std::to_string(static_cast<int>(jerr)) + ")");
  natsSubscription_SetPendingLimits(sub, 65536, 256 * 1024 * 1024);
  return Subscription(NatsPtr<natsSubscription>(sub), std::move(handler));
}

namespace {
KvEntry to_entry(kvEntry* raw) {
  NatsPtr<kvEntry> e(raw);
  KvEntry out;
  out.key = kvEntry_Key(e.get());
  out.value.assign(static_cast<const char*>(kvEntry_Value(e.get())), static_cast<size_t>(kvEntry_ValueLen(e.get())));
  out.revision = kvEntry_Revision(e.get());
  out.created_ms = kvEntry_Created(e.get()) / 1000000;
  out.deleted = kvEntry_Operation(e.get()) != kvOp_Put;
  return out;
}
int64_t ms_until(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return std::max<int64_t>(1, left.count());  // libnats refuses a timeout of 0
}
}  // namespace

std::optional<KvEntry> KvWatcher::next(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    kvEntry* e = nullptr;
    natsStatus s = kvWatcher_Next(&e, w_.get(), ms_until(deadline));
    if (s == NATS_TIMEOUT) return std::nullopt;
    check_nats(s, what_);
    if (e) return to_entry(e);
    caught_up_ = true;  // libnats' "initial values done" marker: no entry, look again
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
  }
}

std::optional<KvEntry> KvBucket::get(const std::string& key) {
  kvEntry* e = nullptr;
  natsStatus s = kvStore_Get(&e, kv_.get(), key.c_str());
  if (s == NATS_NOT_FOUND) return std::nullopt;  // never written, deleted or purged
  check_nats(s, "read key " + key + " of KV bucket " + name_);
  return to_entry(e);
}

std::optional<uint64_t> KvBucket::update(const std::string& key, std::string_view value, uint64_t last) {
  uint64_t rev = 0;
  const int len = static_cast<int>(value.size());
  natsStatus s = last == 0 ? kvStore_Create(&rev, kv_.get(), key.c_str(), value.data(), len)
                           : kvStore_Update(&rev, kv_.get(), key.c_str(), value.data(), len, last);
  if (s == NATS_OK) return rev;
  // libnats does not say "wrong last revision" apart from other failures: look at the key. If it
  // moved on, that is the conflict (or our own write whose ack was lost); else the failure stands.
  Error failed = nats_error(s, "write key " + key + " of KV bucket " + name_);
  std::optional<KvEntry> now;
  try {
    now = get(key);
  } catch (const Error&) {
    throw failed;
  }
  if ((now ? now->revision : 0) != last) return std::nullopt;
  throw failed;
}

uint64_t KvBucket::put(const std::string& key, std::string_view value) {
  uint64_t rev = 0;
  check_nats(kvStore_Put(&rev, kv_.get(), key.c_str(), value.data(), static_cast<int>(value.size())),
             "write key " + key + " of KV bucket " + name_);
  return rev;
}

void KvBucket::erase(const std::string& key) {
  check_nats(kvStore_Delete(kv_.get(), key.c_str()), "delete key " + key + " of KV bucket " + name_);
}

std::vector<KvEntry> KvBucket::values(const std::string& pattern, std::chrono::milliseconds timeout) {
  kvWatchOptions o;
  kvWatchOptions_Init(&o);
  o.IgnoreDeletes = true;
  const std::string what = "read keys " + pattern + " of KV bucket " + name_;
  kvWatcher* raw = nullptr;
  check_nats(kvStore_Watch(&raw, kv_.get(), pattern.c_str(), &o), what);
  NatsPtr<kvWatcher> w(raw);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<KvEntry> out;
  for (;;) {
    kvEntry* e = nullptr;
    check_nats(kvWatcher_Next(&e, w.get(), ms_until(deadline)), what);
    if (!e) break;  // every current value has been delivered
    out.push_back(to_entry(e));
  }
  std::sort(out.begin(), out.end(), [](const KvEntry& a, const KvEntry& b) { return a.revision < b.revision; });
  return out;
}

KvWatcher KvBucket::watch(const std::string& pattern) {
  kvWatcher* raw = nullptr;
  const std::string what = "watch keys " + pattern + " of KV bucket " + name_;
  check_nats(kvStore_Watch(&raw, kv_.get(), pattern.c_str(), nullptr), what);
  return KvWatcher(NatsPtr<kvWatcher>(raw), what);
}

KvBucket Bus::key_value(const KvOptions& o) {
  if (o.history < 1 || o.history > 64)
    throw Error(Code::kInvalidArgument, "KV bucket " + o.bucket + ": history must be 1..64 (a nats-server limit)");
  kvStore* raw = nullptr;
  natsStatus s = js_KeyValue(&raw, js(), o.bucket.c_str());
  if (s == NATS_NOT_FOUND) {
    kvConfig cfg;
    kvConfig_Init(&cfg);
    cfg.Bucket = o.bucket.c_str();
    cfg.Description = o.description.c_str();
    cfg.History = static_cast<uint8_t>(o.history);
    cfg.MaxValueSize = o.max_value_bytes;
    cfg.StorageType = js_FileStorage;
    cfg.Replicas = o.replicas;
    s = js_CreateKeyValue(&raw, js(), &cfg);
    if (s != NATS_OK) {
      // Another process may have created it in the meantime: bind to that one.
      Error failed = nats_error(s, "create KV bucket " + o.bucket + " (is nats-server running with -js?)");
      raw = nullptr;
      if (js_KeyValue(&raw, js(), o.bucket.c_str()) != NATS_OK) throw failed;
      s = NATS_OK;
    }
  }
  check_nats(s, "open KV bucket " + o.bucket + " (is nats-server running with -js?)");
  return KvBucket(NatsPtr<kvStore>(raw), o.bucket);
}

void Bus::flush(std::chrono::milliseconds timeout) {
  check_nats(natsConnection_FlushTimeout(nc_.get(), timeout.count()), "flush to NATS");
}

void Bus::drain(std::chrono::milliseconds timeout) {
  if (drained_ || !nc_) return;
  drained_ = true;
  if (natsConnection_DrainTimeout(nc_.get(), timeout.count()) != NATS_OK) {
    natsConnection_Close(nc_.get());
    return;
  }
  // Drain is asynchronous: wait until the connection reports closed.
  auto deadline = std::chrono::steady_clock::now() + timeout + std::chrono::milliseconds(500);
  while (!natsConnection_IsClosed(nc_.get()) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  natsConnection_Close(nc_.get());
}

bool Bus::connected() const {
  return nc_ && natsConnection_Status(nc_.get()) == NATS_CONN_STATUS_CONNECTED;
}

}  // namespace bulwark
