#include "supervisor/firewall.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_log.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/ip.h>
#include <nftables/libnftables.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <vector>

#include "shared/error.h"
#include "supervisor/netns.h"

namespace bulwark::supervisor {

std::string agent_ruleset(uint32_t proxy_addr_be, uint16_t proxy_port, int log_group, bool transparent) {
  std::string proxy = ip_to_string(proxy_addr_be);
  std::string g = std::to_string(log_group);
  // Transparent: the supervisor answers DNS itself (only names the policy allows), and TCP to
  // any other address goes out to be redirected to the proxy on the supervisor's side. The
  // supervisor's own address stays closed but for the proxy, DNS, and 80/443: inference.local
  // resolves to the supervisor, and its side redirects those to the proxy's inference handler.
  std::string transparent_rules =
      transparent ? "    ip daddr " + proxy + " udp dport 53 accept\n"
                    "    ip daddr " + proxy + " tcp dport 53 accept\n"
                    "    ip daddr " + proxy + " tcp dport { " + kInferencePorts + " } accept\n"
                    "    ip daddr != " + proxy + " meta l4proto tcp accept\n"
                  : "";
  return "table inet bulwark {\n"
         "  chain output {\n"
         "    type filter hook output priority filter; policy drop;\n"
         "    oifname \"lo\" accept\n"
         "    ip daddr " + proxy + " tcp dport " + std::to_string(proxy_port) + " accept\n" + transparent_rules +
         "    limit rate 50/second burst 100 packets log group " + g + "\n"
         "    meta l4proto tcp reject with tcp reset\n"
         "    reject with icmpx type admin-prohibited\n"
         "  }\n"
         // Nothing may connect in: not the host, not another sandbox's agent. Only replies to
         // the agent's own connections (to the proxy) and its loopback.
         "  chain input {\n"
         "    type filter hook input priority filter; policy drop;\n"
         "    iifname \"lo\" accept\n"
         "    ct state established,related accept\n"
         "  }\n"
         "}\n";
}

namespace {
void run_nft(const std::string& rules, const std::string& what) {
  std::unique_ptr<nft_ctx, void (*)(nft_ctx*)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), nft_ctx_free);
  if (!ctx) throw Error(Code::kInternal, "nftables: cannot create a context");
  nft_ctx_buffer_error(ctx.get());
  if (nft_run_cmd_from_buffer(ctx.get(), rules.c_str()) != 0)
    throw Error(Code::kInternal, "nftables rules for " + what + ": " + nft_ctx_get_error_buffer(ctx.get()));
}
}  // namespace

void apply_agent_firewall(uint32_t proxy_addr_be, uint16_t proxy_port, bool transparent) {
  run_nft(agent_ruleset(proxy_addr_be, proxy_port, kDenyLogGroup, transparent), "the agent namespace");
}

std::string supervisor_redirect_ruleset(const std::string& table, const std::string& host_if, uint32_t host_addr_be,
                                        uint16_t transparent_port) {
  std::string host = ip_to_string(host_addr_be);
  // Declared empty then deleted first, in the same transaction: a table a crashed supervisor
  // left behind for this interface name is replaced, not an error.
  return "table ip " + table + " {}\n"
         "delete table ip " + table + "\n"
         "table ip " + table + " {\n"
         "  chain prerouting {\n"
         "    type nat hook prerouting priority dstnat; policy accept;\n"
         "    iifname \"" + host_if + "\" ip daddr != " + host + " meta l4proto tcp redirect to :" +
         std::to_string(transparent_port) + "\n"
         // inference.local: the supervisor's own 80/443 go to the same listener, which serves
         // them as inference.local (nothing else listens there).
         "    iifname \"" + host_if + "\" ip daddr " + host + " tcp dport { " + kInferencePorts + " } redirect to :" +
         std::to_string(transparent_port) + "\n"
         "  }\n"
         "  chain forward {\n"
         "    type filter hook forward priority filter; policy accept;\n"
         "    iifname \"" + host_if + "\" drop\n"
         "  }\n"
         "}\n";
}

TransparentRedirect::TransparentRedirect(const std::string& host_if, uint32_t host_addr_be, uint16_t transparent_port)
    : table_("bulwark_" + host_if) {
  run_nft(supervisor_redirect_ruleset(table_, host_if, host_addr_be, transparent_port),
          "transparent egress in the supervisor's namespace");
}

TransparentRedirect::~TransparentRedirect() {
  try {
    run_nft("delete table ip " + table_ + "\n", "removing " + table_);
  } catch (const std::exception&) {
    // Already gone (someone flushed the ruleset): that is the outcome wanted.
  }
}

void add_default_route(uint32_t via_be) {
  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) throw Error(Code::kInternal, errno_text("netlink socket", errno));
  struct {
    nlmsghdr h;
    rtmsg r;
    char attrs[64];
  } req{};
  req.h.nlmsg_type = RTM_NEWROUTE;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL;
  req.r.rtm_family = AF_INET;
  req.r.rtm_table = RT_TABLE_MAIN;
  req.r.rtm_protocol = RTPROT_BOOT;
  req.r.rtm_scope = RT_SCOPE_UNIVERSE;
  req.r.rtm_type = RTN_UNICAST;
  auto* a = reinterpret_cast<rtattr*>(req.attrs);
  a->rta_type = RTA_GATEWAY;
  a->rta_len = RTA_LENGTH(sizeof via_be);
  std::memcpy(RTA_DATA(a), &via_be, sizeof via_be);
  req.h.nlmsg_len = NLMSG_LENGTH(sizeof(rtmsg)) + RTA_ALIGN(a->rta_len);
  if (::send(fd.get(), &req, req.h.nlmsg_len, 0) < 0) throw Error(Code::kInternal, errno_text("default route: send", errno));
  char buf[1024];
  ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
  if (n < 0) throw Error(Code::kInternal, errno_text("default route: recv", errno));
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  if (h->nlmsg_type == NLMSG_ERROR) {
    int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
    if (err) throw Error(Code::kInternal, errno_text("default route via " + ip_to_string(via_be), err));
  }
}

void disable_ipv6() {
  // Absent when the kernel has no IPv6: then there is nothing to disable.
  std::ofstream f("/proc/sys/net/ipv6/conf/all/disable_ipv6");
  if (f) f << "1";
  std::ofstream d("/proc/sys/net/ipv6/conf/default/disable_ipv6");
  if (d) d << "1";
}

namespace {

// One nfnetlink_log config command.
void nflog_config(int fd, uint16_t group, const void* attr_data, uint16_t attr_type, size_t attr_len) {
  char buf[128] = {0};
  auto* h = reinterpret_cast<nlmsghdr*>(buf);
  h->nlmsg_type = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG;
  h->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  auto* g = reinterpret_cast<nfgenmsg*>(NLMSG_DATA(h));
  g->nfgen_family = AF_UNSPEC;
  g->version = NFNETLINK_V0;
  g->res_id = htons(group);
  auto* a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(g) + NLMSG_ALIGN(sizeof(nfgenmsg)));
  a->nla_type = attr_type;
  a->nla_len = static_cast<uint16_t>(NLA_HDRLEN + attr_len);
  std::memcpy(reinterpret_cast<char*>(a) + NLA_HDRLEN, attr_data, attr_len);
  h->nlmsg_len = static_cast<uint32_t>(NLMSG_LENGTH(NLMSG_ALIGN(sizeof(nfgenmsg)) + NLA_ALIGN(a->nla_len)));
  if (::send(fd, buf, h->nlmsg_len, 0) < 0) throw Error(Code::kInternal, errno_text("nflog config", errno));
  char ack[512];
  ssize_t n = ::recv(fd, ack, sizeof ack, 0);
  if (n < 0) throw Error(Code::kInternal, errno_text("nflog config ack", errno));
  auto* r = reinterpret_cast<nlmsghdr*>(ack);
  if (r->nlmsg_type == NLMSG_ERROR) {
    int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(r))->error;
    if (err) throw Error(Code::kInternal, errno_text("nflog config", err));
  }
}

// The socket must live in the agent's namespace: open it from a thread that entered it, so the
// supervisor's other threads stay where they are.
Fd nflog_socket_in(pid_t pid) {
  Fd result;
  std::string error;
  std::thread t([&] {
    Fd ns(::open(("/proc/" + std::to_string(pid) + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
    if (!ns) {
      error = errno_text("open the agent's network namespace", errno);
      return;
    }
    if (::setns(ns.get(), CLONE_NEWNET) != 0) {
      error = errno_text("enter the agent's network namespace", errno);
      return;
    }
    Fd s(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_NETFILTER));
    if (!s) {
      error = errno_text("nflog socket", errno);
      return;
    }
    result = std::move(s);
  });
  t.join();  // the thread exits with it: its namespace change dies with it
  if (!result) throw Error(Code::kInternal, error);
  return result;
}

}  // namespace

DenialLog::DenialLog(pid_t netns_pid, std::function<void(const Denial&)> on_denial)
    : sock_(nflog_socket_in(netns_pid)), on_denial_(std::move(on_denial)) {
  uint8_t bind_cmd = NFULNL_CFG_CMD_BIND;
  nflog_config(sock_.get(), kDenyLogGroup, &bind_cmd, NFULA_CFG_CMD, 1);
  nfulnl_msg_config_mode mode{};
  mode.copy_range = htonl(64);  // IP + TCP/UDP headers are enough
  mode.copy_mode = NFULNL_COPY_PACKET;
  nflog_config(sock_.get(), kDenyLogGroup, &mode, NFULA_CFG_MODE, sizeof mode);
  // The kernel batches up to 100 packets or a second by default: a denial must be seen at once,
  // also when the agent exits right after it.
  uint32_t one = htonl(1);
  nflog_config(sock_.get(), kDenyLogGroup, &one, NFULA_CFG_QTHRESH, sizeof one);
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) throw Error(Code::kInternal, errno_text("pipe", errno));
  stop_[0].reset(p[0]);
  stop_[1].reset(p[1]);
  thread_ = std::thread([this] { loop(); });
}

DenialLog::~DenialLog() {
  if (stop_[1]) (void)!::write(stop_[1].get(), "x", 1);
  if (thread_.joinable()) thread_.join();
}

void DenialLog::loop() {
  std::vector<char> buf(65536);
  for (;;) {
    pollfd fds[2] = {{sock_.get(), POLLIN, 0}, {stop_[0].get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    // On stop, still read what the kernel already queued: the last denials of an agent that
    // exited right after them.
    bool stopping = fds[1].revents != 0;
    ssize_t n = ::recv(sock_.get(), buf.data(), buf.size(), stopping ? MSG_DONTWAIT : 0);
    if (n <= 0) {
      if (stopping) return;
      continue;
    }
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if ((h->nlmsg_type & 0xff) != NFULNL_MSG_PACKET) continue;
      auto* attr_start = reinterpret_cast<char*>(NLMSG_DATA(h)) + NLMSG_ALIGN(sizeof(nfgenmsg));
      int len = static_cast<int>(h->nlmsg_len) - static_cast<int>(NLMSG_LENGTH(NLMSG_ALIGN(sizeof(nfgenmsg))));
      for (auto* a = reinterpret_cast<nlattr*>(attr_start); len >= static_cast<int>(NLA_HDRLEN) && a->nla_len >= NLA_HDRLEN &&
                                                          a->nla_len <= len;
           len -= NLA_ALIGN(a->nla_len), a = reinterpret_cast<nlattr*>(reinterpret_cast<char*>(a) + NLA_ALIGN(a->nla_len))) {
        if ((a->nla_type & NLA_TYPE_MASK) != NFULA_PAYLOAD) continue;
        auto* p = reinterpret_cast<const uint8_t*>(a) + NLA_HDRLEN;
        size_t plen = a->nla_len - NLA_HDRLEN;
        if (plen < sizeof(iphdr) || (p[0] >> 4) != 4) continue;
        iphdr ip;
        std::memcpy(&ip, p, sizeof ip);
        Denial d;
        d.destination = ip_to_string(ip.daddr);
        size_t ihl = static_cast<size_t>(ip.ihl) * 4;
        d.protocol = ip.protocol == IPPROTO_TCP ? "tcp" : ip.protocol == IPPROTO_UDP ? "udp" : ip.protocol == IPPROTO_ICMP ? "icmp" : std::to_string(ip.protocol);
        if ((ip.protocol == IPPROTO_TCP || ip.protocol == IPPROTO_UDP) && plen >= ihl + 4)
          d.port = static_cast<uint16_t>((p[ihl + 2] << 8) | p[ihl + 3]);
        try {
          on_denial_(d);
        } catch (const std::exception&) {
          // A failing report must not stop the log; the callback logs its own errors.
        }
      }
    }
  }
}

}  // namespace bulwark::supervisor
