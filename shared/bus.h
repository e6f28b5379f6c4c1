#pragma once
// The one boundary between Bulwark and libnats: RAII for every NATS handle, natsStatus turned into
// bulwark::Error with context, typed protobuf helpers, and errors carried in reply headers so that
// any request can fail with a reason whatever its reply type.
#include <nats/nats.h>

#include <google/protobuf/message.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/error.h"

namespace bulwark {

struct NatsDeleter {
  void operator()(natsConnection* p) const { natsConnection_Destroy(p); }
  void operator()(natsSubscription* p) const { natsSubscription_Destroy(p); }
  void operator()(natsMsg* p) const { natsMsg_Destroy(p); }
  void operator()(natsOptions* p) const { natsOptions_Destroy(p); }
  void operator()(jsCtx* p) const { jsCtx_Destroy(p); }
  void operator()(kvStore* p) const { kvStore_Destroy(p); }
  void operator()(kvEntry* p) const { kvEntry_Destroy(p); }
  void operator()(kvWatcher* p) const { kvWatcher_Destroy(p); }
};
template <class T>
using NatsPtr = std::unique_ptr<T, NatsDeleter>;

// Turns a failed natsStatus into an Error naming what was being done. No-op on NATS_OK.
void check_nats(natsStatus s, const std::string& what);

// A received message. Owns the natsMsg.
class Msg {
 public:
  explicit Msg(natsMsg* m) : m_(m) {}
  std::string_view subject() const;
  std::string_view data() const;
  const char* reply() const;  // nullptr when none
  std::optional<std::string> header(const char* key) const;
  // Throws the Error carried in Bulwark-Error-* headers, if any.
  void throw_if_error() const;
  void ack();  // JetStream manual ack
  uint64_t stream_seq() const;  // JetStream: the message's sequence in its stream (0 if none)
  natsMsg* raw() const { return m_.get(); }

 private:
  NatsPtr<natsMsg> m_;
};

using Handler = std::function<void(Msg&)>;

// A live subscription; unsubscribes when destroyed.
class Subscription {
 public:
  Subscription() = default;
  Subscription(NatsPtr<natsSubscription> sub, std::unique_ptr<Handler> handler)
      : handler_(std::move(handler)), sub_(std::move(sub)) {}
  Subscription(Subscription&&) = default;
  Subscription& operator=(Subscription&&) = default;
  ~Subscription();

 private:
  std::unique_ptr<Handler> handler_;  // destroyed after sub_ (declared first)
  NatsPtr<natsSubscription> sub_;
};

// One value of a JetStream key-value bucket, copied out of libnats.
struct KvEntry {
  std::string key;
  std::string value;
  uint64_t revision = 0;   // the bucket stream's sequence number of this write
  int64_t created_ms = 0;  // Unix epoch milliseconds
  bool deleted = false;    // a delete or purge marker (only watchers see these)
};

// The values of the keys a pattern matches: first the current one of each, then every new write.
// It survives reconnects (libnats recreates its ordered consumer). Stops when destroyed.
class KvWatcher {
 public:
  explicit KvWatcher(NatsPtr<kvWatcher> w, std::string what) : w_(std::move(w)), what_(std::move(what)) {}
  // The next entry, or nullopt when none came within timeout. Throws Error when the watch failed.
  std::optional<KvEntry> next(std::chrono::milliseconds timeout);
  // True once every value present when the watch started has been returned by next().
  bool caught_up() const { return caught_up_; }

 private:
  NatsPtr<kvWatcher> w_;
  std::string what_;
  bool caught_up_ = false;
};

// A JetStream key-value bucket (RAII over kvStore; thread-safe like libnats). Made by
// Bus::key_value; must not outlive its Bus.
class KvBucket {
 public:
  KvBucket(NatsPtr<kvStore> kv, std::string name) : kv_(std::move(kv)), name_(std::move(name)) {}
  const std::string& name() const { return name_; }
  // The key's value; nullopt when it was never written or is deleted.
  std::optional<KvEntry> get(const std::string& key);
  // Writes value only if the key's last revision is still `last` (0: only if the key does not
  // exist). Returns the new revision, or nullopt when the key moved on (someone else wrote it, or
  // a write whose ack was lost did): read it again and decide.
  std::optional<uint64_t> update(const std::string& key, std::string_view value, uint64_t last);
  uint64_t put(const std::string& key, std::string_view value);
  // Deletes the key (a delete marker: get() finds nothing, watchers see deleted = true).
  void erase(const std::string& key);
  // The current value of every key matching pattern (`*` and `>` wildcards), in revision order.
  std::vector<KvEntry> values(const std::string& pattern,
                              std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  KvWatcher watch(const std::string& pattern);

 private:
  NatsPtr<kvStore> kv_;
  std::string name_;
};

// Signs the server's nonce with a user's nkey seed for libnats' signature callback.
// libnats before 3.8 (Debian 12 has 3.4.1) drops a signature whose first byte is zero and sends
// none (nats.c#705), so nats-server refuses 1 connect in 256 as if the credentials were wrong; and
// two such refusals in a row end libnats' reconnecting for good. The signer fails those attempts
// before anything is sent instead: the next attempt gets a new nonce, hence a new signature.
struct NonceSigner {
  std::string seed;
  std::atomic<int> refused{0};  // attempts failed for a leading zero byte, until connect resets it
  static natsStatus callback(char** err, unsigned char** sig, int* len, const char* nonce, void* signer);
  // natsConnection_Connect with o (whose signature callback is this signer's), again at once after
  // an attempt the callback failed, up to 16 times.
  natsStatus connect(natsConnection** nc, natsOptions* o);
};

class Bus {
 public:
  struct Options {
    std::string url = "nats://127.0.0.1:4222";
    std::string name;                          // connection name shown by nats-server
    std::chrono::milliseconds connect_timeout{10000};  // keep retrying the first connect this long
    // NATS user credentials (operator mode, docs/security.md "NATS"): a .creds file, or a .creds
    // file's text (what a sandbox's supervisor gets in BULWARK_NATS_CREDS); "" = none.
    std::string creds;
    // A PEM CA bundle file, or its text: connect with TLS and trust only this CA for the server's
    // certificate; "" = TLS only when the URL says tls://, with the system's CAs.
    std::string ca_file;
    // Prefix of this connection's reply inboxes ("" = libnats' "_INBOX"): a sandbox may only
    // subscribe below its own (nats_auth::sandbox_inbox_prefix).
    std::string inbox_prefix;
  };
  // Throws Error(kUnavailable) saying which URL could not be reached and what to do.
  static std::unique_ptr<Bus> connect(const Options& opts);
  struct Key {  // only connect() can make a Bus
    explicit Key() = default;
  };
  explicit Bus(Key) {}
  ~Bus();
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  void publish(const std::string& subject, std::string_view data);
  void publish(const std::string& subject, const google::protobuf::Message& m);
  // With a reply subject: the answers (possibly a stream of them) arrive on `reply`, an inbox the
  // caller subscribed to first; the server sends a no-responders status there when nobody listens.
  void publish(const std::string& subject, const std::string& reply, std::string_view data);
  // The largest message the server accepts (its max_payload), in bytes.
  int64_t max_payload() const;
  // A fresh reply subject below this connection's inbox prefix (Options::inbox_prefix).
  std::string new_inbox() const;
  // The libnats connection, owned by this Bus, for what it does not wrap.
  natsConnection* native_handle() const { return nc_.get(); }
  Subscription subscribe(const std::string& subject, Handler h);
  Subscription queue_subscribe(const std::string& subject, const std::string& queue, Handler h);

  // Request/reply. Throws Error: kUnavailable when nobody listens (no responders), kTimeout, or
  // the error the responder sent in its headers.
  Msg request(const std::string& subject, std::string_view data, std::chrono::milliseconds timeout);
  template <class Reply>
  Reply request(const std::string& subject, const google::protobuf::Message& req,
                std::chrono::milliseconds timeout) {
    Msg m = request(subject, req.SerializeAsString(), timeout);
    Reply r;
    if (!r.ParseFromArray(m.data().data(), static_cast<int>(m.data().size())))
      throw Error(Code::kInternal, "malformed " + r.GetTypeName() + " reply on " + subject);
    return r;
  }
  void respond(const Msg& req, const google::protobuf::Message& reply);
  void respond_error(const Msg& req, const Error& e);

  // Serves typed requests: bad bytes get an invalid_argument reply naming the expected type, an
  // Error thrown by fn is sent back as is, anything else as internal. queue may be empty.
  template <class Req, class Rep>
  Subscription serve(const std::string& subject, const std::string& queue,
                     std::function<Rep(const Req&)> fn) {
    Handler h = [this, fn = std::move(fn), subject](Msg& m) {
      Req req;
      if (!req.ParseFromArray(m.data().data(), static_cast<int>(m.data().size()))) {
        respond_error(m, Error(Code::kInvalidArgument,
                               "request on " + subject + " is not a valid " + req.GetTypeName()));
        return;
      }
      reply_with(m, [&] { respond(m, fn(req)); });
    };
    return queue.empty() ? subscribe(subject, std::move(h)) : queue_subscribe(subject, queue, std::move(h));
  }
  // Runs fn; turns an exception into an error reply (used by serve and by handlers that reply later).
  void reply_with(const Msg& req, const std::function<void()>& fn);

  // JetStream. ensure_stream creates the stream or updates its subjects/age; idempotent.
  void ensure_stream(const std::string& name, const std::vector<std::string>& subjects,
                     std::chrono::seconds max_age);
  // Persists one message and waits for the server's ack; retries briefly while the stream is
  // being created by its owner. Throws Error(kUnavailable) when it cannot be stored.
  void js_publish(const std::string& subject, const google::protobuf::Message& m,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  // Durable push consumer with explicit ack: the handler must call Msg::ack() once it has applied
  // the message; unacked messages are redelivered (also after a restart of the consumer).
  Subscription js_durable_subscribe(const std::string& stream, const std::string& durable,
                                    const std::string& filter, Handler h);

  // A JetStream key-value bucket, created when missing (idempotent: replicas may race to create it).
  struct KvOptions {
    std::string bucket;
    std::string description;
    int history = 1;                   // values kept per key; nats-server allows at most 64
    int32_t max_value_bytes = 1 << 20;
    int replicas = 1;                  // > 1 only on a NATS cluster
  };
  KvBucket key_value(const KvOptions& o);

  void flush(std::chrono::milliseconds timeout = std::chrono::milliseconds(2000));
  // Stops receiving, lets in-flight handlers finish, flushes, closes. Safe to call twice.
  void drain(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000));
  bool connected() const;
  const std::string& url() const { return url_; }
  // The CA the connection trusts as PEM text ("" = none given), for handing on to a sandbox.
  const std::string& ca_pem() const { return ca_pem_; }

 private:
  Subscription make_sub(const std::string& subject, const std::string* queue, Handler h);
  jsCtx* js();

  struct UserCreds {
    std::string jwt;
    NonceSigner signer;
  };
  std::string url_;
  std::string inbox_prefix_ = "_INBOX";
  std::string ca_pem_;
  std::unique_ptr<UserCreds> creds_;  // read by libnats' callbacks on every (re)connect: outlives nc_
  NatsPtr<natsConnection> nc_;
  NatsPtr<jsCtx> js_;
  bool drained_ = false;
};

}  // namespace bulwark
