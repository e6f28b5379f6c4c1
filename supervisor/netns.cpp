#include "supervisor/netns.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <vector>

#include "shared/error.h"
#include "shared/process.h"

namespace bulwark::supervisor {

namespace {

// Builds one rtnetlink request: header, fixed part, then nested attributes.
class NlMsg {
 public:
  NlMsg(uint16_t type, uint16_t flags) {
    buf_.resize(NLMSG_HDRLEN);
    hdr()->nlmsg_type = type;
    hdr()->nlmsg_flags = static_cast<uint16_t>(flags | NLM_F_REQUEST | NLM_F_ACK);
    hdr()->nlmsg_seq = 1;
  }
  template <class T>
  void fixed(const T& t) {
    append(&t, sizeof t);
  }
  void attr(uint16_t type, const void* data, size_t len) {
    rtattr a{};
    a.rta_type = type;
    a.rta_len = static_cast<uint16_t>(RTA_LENGTH(len));
    append(&a, sizeof a);
    append(data, len);
  }
  void attr_str(uint16_t type, const std::string& s) { attr(type, s.c_str(), s.size() + 1); }
  template <class T>
  void attr_val(uint16_t type, T v) {
    attr(type, &v, sizeof v);
  }
  size_t begin_nest(uint16_t type) {
    size_t at = buf_.size();
    attr(type, nullptr, 0);
    return at;
  }
  void end_nest(size_t at) {
    reinterpret_cast<rtattr*>(buf_.data() + at)->rta_len = static_cast<uint16_t>(buf_.size() - at);
  }
  // A nested ifinfomsg (veth peer) lives inside an attribute: its header is written like fixed().
  template <class T>
  void raw(const T& t) {
    append(&t, sizeof t);
  }
  const char* data() {
    hdr()->nlmsg_len = static_cast<uint32_t>(buf_.size());
    return buf_.data();
  }
  size_t size() const { return buf_.size(); }

 private:
  nlmsghdr* hdr() { return reinterpret_cast<nlmsghdr*>(buf_.data()); }
  void append(const void* p, size_t n) {
    size_t old = buf_.size();
    buf_.resize(NLMSG_ALIGN(old + n));
    if (n) std::memcpy(buf_.data() + old, p, n);
  }
  std::vector<char> buf_;
};

Fd rtnl_socket() {
  Fd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!fd) throw Error(Code::kInternal, errno_text("netlink socket", errno));
  return fd;
}

// Sends one request and waits for its ack; a negative errno in the ack is thrown with `what`.
void rtnl_call(NlMsg& m, const std::string& what) {
  Fd fd = rtnl_socket();
  sockaddr_nl sa{};
  sa.nl_family = AF_NETLINK;
  if (::sendto(fd.get(), m.data(), m.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    throw Error(Code::kInternal, errno_text(what + ": netlink send", errno));
  char buf[8192];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw Error(Code::kInternal, errno_text(what + ": netlink recv", errno));
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) {
        int err = -reinterpret_cast<nlmsgerr*>(NLMSG_DATA(h))->error;
        if (err != 0) throw Error(Code::kInternal, errno_text(what, err));
        return;
      }
    }
  }
}

// Lists the IPv4 addresses configured in this namespace.
std::set<uint32_t> used_addresses() {
  Fd fd = rtnl_socket();
  struct {
    nlmsghdr h;
    ifaddrmsg a;
  } req{};
  req.h.nlmsg_len = sizeof req;
  req.h.nlmsg_type = RTM_GETADDR;
  req.h.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  req.a.ifa_family = AF_INET;
  if (::send(fd.get(), &req, sizeof req, 0) < 0) throw Error(Code::kInternal, errno_text("list addresses", errno));
  std::set<uint32_t> out;
  char buf[16384];
  for (;;) {
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n)); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_DONE) return out;
      if (h->nlmsg_type == NLMSG_ERROR) throw Error(Code::kInternal, "list addresses: netlink error");
      auto* ifa = reinterpret_cast<ifaddrmsg*>(NLMSG_DATA(h));
      int len = static_cast<int>(IFA_PAYLOAD(h));
      for (auto* a = IFA_RTA(ifa); RTA_OK(a, len); a = RTA_NEXT(a, len))
        if (a->rta_type == IFA_LOCAL || a->rta_type == IFA_ADDRESS) out.insert(*reinterpret_cast<uint32_t*>(RTA_DATA(a)));
    }
  }
  return out;
}

int if_index(const std::string& name) {
  unsigned idx = ::if_nametoindex(name.c_str());
  if (idx == 0) throw Error(Code::kInternal, errno_text("find interface " + name, errno));
  return static_cast<int>(idx);
}

void add_address(const std::string& ifname, uint32_t addr, int prefix) {
  NlMsg m(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  ifaddrmsg ifa{};
  ifa.ifa_family = AF_INET;
  ifa.ifa_prefixlen = static_cast<unsigned char>(prefix);
  ifa.ifa_index = static_cast<unsigned>(if_index(ifname));
  m.fixed(ifa);
  m.attr_val(IFA_LOCAL, addr);
  m.attr_val(IFA_ADDRESS, addr);
  rtnl_call(m, "address " + ip_to_string(addr) + "/" + std::to_string(prefix) + " on " + ifname);
}

void link_up(const std::string& ifname) {
  NlMsg m(RTM_NEWLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = if_index(ifname);
  ifi.ifi_flags = IFF_UP;
  ifi.ifi_change = IFF_UP;
  m.fixed(ifi);
  rtnl_call(m, "bring up " + ifname);
}

}  // namespace

std::string ip_to_string(uint32_t addr_be) {
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &addr_be, buf, sizeof buf);
  return buf;
}

VethPlan plan_veth(const std::string& sandbox_id) {
  auto used = used_addresses();
  constexpr uint32_t kBase = (10u << 24) | (200u << 16);  // 10.200.0.0/16: 16384 /30 blocks
  size_t start = std::hash<std::string>{}(sandbox_id) % 16384;
  for (size_t i = 0; i < 16384; ++i) {
    uint32_t block = kBase + static_cast<uint32_t>(((start + i) % 16384) * 4);
    uint32_t host = htonl(block + 1), agent = htonl(block + 2);
    if (used.count(host) || used.count(agent)) continue;
    VethPlan p;
    char name[IFNAMSIZ];
    std::snprintf(name, sizeof name, "bw%08x", block);  // unique per block, 10 chars
    p.host_if = name;
    p.agent_if = "eth0";
    p.host_addr = host;
    p.agent_addr = agent;
    return p;
  }
  throw Error(Code::kUnavailable, "no free /30 left in 10.200.0.0/16 for the sandbox's veth pair");
}

void create_veth(const VethPlan& plan, pid_t agent_pid) {
  NlMsg m(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  m.fixed(ifi);
  m.attr_str(IFLA_IFNAME, plan.host_if);
  size_t linkinfo = m.begin_nest(IFLA_LINKINFO);
  m.attr_str(IFLA_INFO_KIND, "veth");
  size_t data = m.begin_nest(IFLA_INFO_DATA);
  size_t peer = m.begin_nest(VETH_INFO_PEER);
  ifinfomsg peer_ifi{};
  peer_ifi.ifi_family = AF_UNSPEC;
  m.raw(peer_ifi);
  m.attr_str(IFLA_IFNAME, plan.agent_if);
  m.attr_val<uint32_t>(IFLA_NET_NS_PID, static_cast<uint32_t>(agent_pid));
  m.end_nest(peer);
  m.end_nest(data);
  m.end_nest(linkinfo);
  rtnl_call(m, "create veth " + plan.host_if + " with its peer in the agent's namespace");
  add_address(plan.host_if, plan.host_addr, plan.prefix);
  link_up(plan.host_if);
}

void configure_agent_side(const VethPlan& plan) {
  link_up("lo");
  add_address(plan.agent_if, plan.agent_addr, plan.prefix);
  link_up(plan.agent_if);
}

void delete_veth(const std::string& host_if) {
  unsigned idx = ::if_nametoindex(host_if.c_str());
  if (idx == 0) return;
  NlMsg m(RTM_DELLINK, 0);
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = static_cast<int>(idx);
  m.fixed(ifi);
  try {
    rtnl_call(m, "delete " + host_if);
  } catch (const Error&) {
    // Gone already with the agent's namespace: that is the outcome wanted.
  }
}

}  // namespace bulwark::supervisor
