// HostSlirp: libslirp glue - configuration, callbacks (frames, clock, timers), poll integration,
// the fragment guard in front of slirp_input() and QEMU's `-netdev user` option syntax (see
// host_slirp.h and docs/network.md).
#include "machine/host_slirp.h"

#include <arpa/inet.h>

#include <charconv>
#include <climits>
#include <cstdio>
#include <optional>

#include "machine/ipv4_reasm.h"

#ifdef M86_HAVE_SLIRP
#include <libslirp.h>
#endif

namespace m86::host {

namespace {

bool parse_port(std::string_view s, uint16_t& port) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > 65535) return false;
    port = uint16_t(v);
    return true;
}

bool parse_bool(std::string_view v, bool& out) {
    if (v == "on" || v == "yes" || v == "true") return out = true, true;
    if (v == "off" || v == "no" || v == "false") return out = false, true;
    return false;
}

bool valid_ipv4(const std::string& s) {
    in_addr a;
    return inet_pton(AF_INET, s.c_str(), &a) == 1;
}
bool valid_ipv6(const std::string& s) {
    in6_addr a;
    return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// "addr[/len]" -> addr, len.
bool split_prefix(std::string_view v, std::string& addr, unsigned& len, unsigned max_len) {
    auto slash = v.find('/');
    addr = std::string(v.substr(0, slash));
    if (slash == std::string_view::npos) return true;
    auto d = v.substr(slash + 1);
    auto [p, ec] = std::from_chars(d.data(), d.data() + d.size(), len);
    return !d.empty() && ec == std::errc() && p == d.data() + d.size() && len <= max_len;
}

}  // namespace

bool slirp_version_at_least(std::string_view version, unsigned major, unsigned minor, unsigned micro) {
    unsigned v[3] = {0, 0, 0};
    const char* p = version.data();
    const char* e = p + version.size();
    for (unsigned i = 0; i < 3; i++) {
        auto [q, ec] = std::from_chars(p, e, v[i]);
        if (ec != std::errc()) return false;
        p = q;
        if (i < 2 && (p == e || *p++ != '.')) return false;
    }
    if (v[0] != major) return v[0] > major;
    if (v[1] != minor) return v[1] > minor;
    return v[2] >= micro;
}

bool parse_hostfwd(std::string_view spec, Hostfwd& out, std::string& error) {
    // [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport
    Hostfwd r;
    auto bad = [&](const char* why) {
        error = "hostfwd '" + std::string(spec) + "': " + why + " (expected [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport)";
        return false;
    };
    auto colon = spec.find(':');
    if (colon == std::string_view::npos) return bad("no protocol separator");
    auto proto = spec.substr(0, colon);
    if (proto == "udp") r.udp = true;
    else if (!proto.empty() && proto != "tcp") return bad("protocol must be tcp or udp");
    auto rest = spec.substr(colon + 1);
    auto dash = rest.find('-');
    if (dash == std::string_view::npos) return bad("no '-' between the host and the guest side");
    auto side = [&](std::string_view s, std::string& addr, uint16_t& port) {
        auto c = s.rfind(':');
        if (c == std::string_view::npos) return false;
        addr = std::string(s.substr(0, c));
        return parse_port(s.substr(c + 1), port) && (addr.empty() || valid_ipv4(addr));
    };
    if (!side(rest.substr(0, dash), r.host_addr, r.host_port)) return bad("bad host address or port");
    if (!side(rest.substr(dash + 1), r.guest_addr, r.guest_port) || r.guest_port == 0)
        return bad("bad guest address or port");
    out = r;
    return true;
}

bool SlirpOptions::set(std::string_view key, std::string_view value, std::string& error) {
    std::string v(value);
    auto bad = [&]() {
        error = "-netdev user: invalid value '" + v + "' for '" + std::string(key) + "'";
        return false;
    };
    if (key == "net") {
        std::string a;
        unsigned len = 24;
        if (!split_prefix(value, a, len, 32) || !valid_ipv4(a)) return bad();
        net = a, prefix_len = len;
    } else if (key == "host") {
        if (!valid_ipv4(v)) return bad();
        host = v;
    } else if (key == "dhcpstart") {
        if (!valid_ipv4(v)) return bad();
        dhcp_start = v;
    } else if (key == "dns") {
        if (!valid_ipv4(v)) return bad();
        dns = v;
    } else if (key == "ipv4") {
        if (!parse_bool(value, ipv4)) return bad();
    } else if (key == "ipv6") {
        if (!parse_bool(value, ipv6)) return bad();
    } else if (key == "ipv6-net" || key == "ipv6-prefix") {
        std::string a;
        unsigned len = 64;
        if (!split_prefix(value, a, len, 126) || !valid_ipv6(a)) return bad();
        ipv6_prefix = a, ipv6_prefix_len = len;
    } else if (key == "ipv6-host") {
        if (!valid_ipv6(v)) return bad();
        ipv6_host = v;
    } else if (key == "ipv6-dns") {
        if (!valid_ipv6(v)) return bad();
        ipv6_dns = v;
    } else if (key == "restrict") {
        if (!parse_bool(value, restricted)) return bad();
    } else if (key == "hostname") {
        hostname = v;
    } else if (key == "domainname") {
        domainname = v;
    } else if (key == "hostfwd") {
        Hostfwd r;
        if (!parse_hostfwd(value, r, error)) return false;
        hostfwd.push_back(r);
    } else {
        error = "-netdev user: unsupported option '" + std::string(key) + "'";
        return false;
    }
    return true;
}

#ifdef M86_HAVE_SLIRP

namespace {

// The fragment guard: why guest IP fragments do not reach libslirp.
//
// IPv4. libslirp's ip_reass() (ip_input.c) keeps fragment queues in mbufs and links a datagram's
// first fragment to its queue through casts between `struct ipq` and `struct ipasfrag`, which C's
// aliasing rules do not allow. Debian 12's libslirp0 4.7.0-1 is compiled so that, for the first
// fragment to arrive, it reads the queue's head before the store that links the fragment in: it
// finds the queue empty, a fragment without More Fragments (a lone last fragment, or a last one
// that arrives first) passes as "reassembly complete", and the concatenation dereferences a null
// pointer. One guest frame kills micro86 with SIGSEGV (QEMU 7.2 on the same library too). A GCC
// 12 -O2 build of the same source happens not to crash, so the version number alone does not tell
// a safe build from a bad one, and no release is known to rewrite that code: every libslirp
// version is guarded. micro86 reassembles IPv4 fragments itself (Ipv4Reassembler: RFC 791, bounded,
// overlaps dropped per RFC 5722) and hands slirp_input() whole datagrams only. Those may exceed the
// 1500-byte MTU: libslirp 4.7.0 sizes its input buffer to each frame (m_inc), and if_mru only
// bounds the TCP MSS it advertises, so no MRU change is needed (if_mtu must stay 1500: it is also
// the size of the frames slirp sends, which must fit the guest's receive buffers).
//
// IPv6. libslirp 4.7.0 has no IPv6 reassembly: ip6_input() dispatches on the fixed header's next
// header (TCP, UDP, ICMPv6) and frees everything else, a fragment header (44) included
// (tests/devices/slirp_probe.c checks that lone IPv6 fragments do not crash it). The guard drops IPv6
// fragments before libslirp sees them, which changes nothing for the guest and keeps its IPv6
// input away from that code in any version.
//
// The first libslirp release trusted with guest fragments: none. When a release is known to fix
// ip_reass(), set it here; the check reads the library loaded at run time (slirp_version_string()),
// which may differ from the headers micro86 was built with.
struct SlirpVersion {
    unsigned major, minor, micro;
};
constexpr std::optional<SlirpVersion> kFirstTrustedSlirp = std::nullopt;

constexpr size_t kEthHeader = 14, kEthType = 12;
constexpr uint16_t kEthIpv4 = 0x0800, kEthIpv6 = 0x86dd;
constexpr size_t kIpv6Header = 40, kIpv6NextHeader = 6;
constexpr uint8_t kIpv6Fragment = 44;

// A slirp timer on the board's clock.
struct SlirpTimer {
    dev::Timer timer;
    SlirpTimer(dev::Clock& clock, SlirpTimerCb cb, void* cb_opaque)
        : timer(clock, [cb, cb_opaque](uint64_t) { cb(cb_opaque); }) {}
};

short to_poll(int slirp_events) {
    short e = 0;
    if (slirp_events & SLIRP_POLL_IN) e |= POLLIN;
    if (slirp_events & SLIRP_POLL_OUT) e |= POLLOUT;
    if (slirp_events & SLIRP_POLL_PRI) e |= POLLPRI;
    if (slirp_events & SLIRP_POLL_ERR) e |= POLLERR;
    if (slirp_events & SLIRP_POLL_HUP) e |= POLLHUP;
    return e;
}

int from_poll(short revents) {
    int e = 0;
    if (revents & POLLIN) e |= SLIRP_POLL_IN;
    if (revents & POLLOUT) e |= SLIRP_POLL_OUT;
    if (revents & POLLPRI) e |= SLIRP_POLL_PRI;
    if (revents & POLLERR) e |= SLIRP_POLL_ERR;
    if (revents & POLLHUP) e |= SLIRP_POLL_HUP;
    return e;
}

}  // namespace

struct HostSlirp::Impl {
    HostSlirp* owner = nullptr;
    dev::Clock& clock;
    Slirp* slirp = nullptr;
    SlirpCb cb = {};
    // Strings slirp keeps pointers to.
    std::string hostname, domainname;
    std::vector<pollfd>* fill_fds = nullptr;
    const std::vector<pollfd>* poll_fds = nullptr;
    unsigned guest_errors = 0;
    // The fragment guard (see the top of this file).
    bool guard = true;
    Ipv4Reassembler reasm;
    std::vector<uint8_t> whole;  // a reassembled datagram, then the frame handed to slirp
    uint64_t ipv6_dropped = 0;

    explicit Impl(dev::Clock& c) : clock(c) {}

    static Impl& self(void* opaque) { return *static_cast<Impl*>(opaque); }

    static ssize_t send_packet(const void* buf, size_t len, void* opaque) {
        HostSlirp* o = self(opaque).owner;
        if (o && o->receiver_) o->receiver_->receive(static_cast<const uint8_t*>(buf), len);
        return ssize_t(len);
    }
    static void guest_error(const char* msg, void* opaque) {
        if (self(opaque).guest_errors++ < 8) std::fprintf(stderr, "micro86: slirp: guest error: %s\n", msg);
    }
    static int64_t clock_get_ns(void* opaque) { return int64_t(self(opaque).clock.now()); }
    static void* timer_new(SlirpTimerCb cb, void* cb_opaque, void* opaque) {
        return new SlirpTimer(self(opaque).clock, cb, cb_opaque);
    }
    static void timer_free(void* timer, void*) { delete static_cast<SlirpTimer*>(timer); }
    static void timer_mod(void* timer, int64_t expire_ms, void*) {
        // expire_ms is in the clock_get_ns timebase, in milliseconds.
        static_cast<SlirpTimer*>(timer)->timer.arm(expire_ms <= 0 ? 0 : uint64_t(expire_ms) * 1'000'000ull);
    }
    static void register_poll_fd(int, void*) {}    // descriptors are collected at every poll
    static void unregister_poll_fd(int, void*) {}
    static void notify(void*) {}                   // single-threaded: the next poll sees it

    static int add_poll(int fd, int events, void* opaque) {
        auto& fds = *self(opaque).fill_fds;
        fds.push_back({fd, to_poll(events), 0});
        return int(fds.size() - 1);
    }
    static int get_revents(int idx, void* opaque) {
        const auto* fds = self(opaque).poll_fds;
        if (!fds || idx < 0 || size_t(idx) >= fds->size()) return 0;
        return from_poll((*fds)[size_t(idx)].revents);
    }
};

HostSlirp::HostSlirp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) { impl_->owner = this; }

HostSlirp::~HostSlirp() {
    if (impl_->slirp) slirp_cleanup(impl_->slirp);
}

std::unique_ptr<HostSlirp> HostSlirp::create(const SlirpOptions& opt, dev::Clock& clock, std::string& error) {
    auto impl = std::make_unique<Impl>(clock);
    SlirpConfig cfg = {};
    cfg.version = 1;  // the fields below all exist since libslirp's first configuration version
    // libslirp's "emulation" of old protocols (FTP, IRC DCC, ident, RealAudio...) rewrites guest
    // TCP streams and has a record of memory-safety bugs: off, and no option turns it on (QEMU has
    // none either).
    cfg.enable_emu = false;
    // if_mtu and if_mru stay at libslirp's 1500 (see the fragment guard above).
    cfg.restricted = opt.restricted;
    cfg.in_enabled = opt.ipv4;
    cfg.in6_enabled = opt.ipv6;
    auto v4 = [&](const std::string& s, in_addr& a, const char* what) {
        if (inet_pton(AF_INET, s.c_str(), &a) == 1) return true;
        error = std::string("-netdev user: bad ") + what + " address '" + s + "'";
        return false;
    };
    auto v6 = [&](const std::string& s, in6_addr& a, const char* what) {
        if (inet_pton(AF_INET6, s.c_str(), &a) == 1) return true;
        error = std::string("-netdev user: bad ") + what + " address '" + s + "'";
        return false;
    };
    if (!v4(opt.net, cfg.vnetwork, "network") || !v4(opt.host, cfg.vhost, "host") ||
        !v4(opt.dhcp_start, cfg.vdhcp_start, "dhcpstart") || !v4(opt.dns, cfg.vnameserver, "dns") ||
        !v6(opt.ipv6_prefix, cfg.vprefix_addr6, "ipv6-net") || !v6(opt.ipv6_host, cfg.vhost6, "ipv6-host") ||
        !v6(opt.ipv6_dns, cfg.vnameserver6, "ipv6-dns"))
        return nullptr;
    if (opt.prefix_len == 0 || opt.prefix_len > 30) {
        error = "-netdev user: network prefix /" + std::to_string(opt.prefix_len) + " leaves no room for hosts";
        return nullptr;
    }
    cfg.vnetmask.s_addr = htonl(~0u << (32 - opt.prefix_len));
    cfg.vprefix_len = uint8_t(opt.ipv6_prefix_len);
    // QEMU's checks: the host, DHCP and DNS addresses lie in the network.
    auto in_net = [&](in_addr a) { return (a.s_addr & cfg.vnetmask.s_addr) == (cfg.vnetwork.s_addr & cfg.vnetmask.s_addr); };
    if (!in_net(cfg.vhost) || !in_net(cfg.vdhcp_start) || !in_net(cfg.vnameserver)) {
        error = "-netdev user: host, dhcpstart and dns must be inside net " + opt.net + "/" + std::to_string(opt.prefix_len);
        return nullptr;
    }
    impl->hostname = opt.hostname;
    impl->domainname = opt.domainname;
    cfg.vhostname = impl->hostname.empty() ? nullptr : impl->hostname.c_str();
    cfg.vdomainname = impl->domainname.empty() ? nullptr : impl->domainname.c_str();

    SlirpCb& cb = impl->cb;
    cb.send_packet = &Impl::send_packet;
    cb.guest_error = &Impl::guest_error;
    cb.clock_get_ns = &Impl::clock_get_ns;
    cb.timer_new = &Impl::timer_new;
    cb.timer_free = &Impl::timer_free;
    cb.timer_mod = &Impl::timer_mod;
    cb.register_poll_fd = &Impl::register_poll_fd;
    cb.unregister_poll_fd = &Impl::unregister_poll_fd;
    cb.notify = &Impl::notify;

    Impl* raw = impl.get();
    raw->slirp = slirp_new(&cfg, &raw->cb, raw);
    if (!raw->slirp) {
        error = "-netdev user: libslirp could not start";
        return nullptr;
    }
    if (const auto& t = kFirstTrustedSlirp)
        raw->guard = !slirp_version_at_least(slirp_version_string(), t->major, t->minor, t->micro);
    std::unique_ptr<HostSlirp> s(new HostSlirp(std::move(impl)));
    for (const Hostfwd& r : opt.hostfwd) {
        in_addr host = {}, guest = cfg.vdhcp_start;
        host.s_addr = htonl(INADDR_ANY);
        if (!r.host_addr.empty()) inet_pton(AF_INET, r.host_addr.c_str(), &host);
        if (!r.guest_addr.empty()) inet_pton(AF_INET, r.guest_addr.c_str(), &guest);
        if (slirp_add_hostfwd(raw->slirp, r.udp, host, r.host_port, guest, r.guest_port) < 0) {
            char h[INET_ADDRSTRLEN], g[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, &host, h, sizeof h);
            inet_ntop(AF_INET, &guest, g, sizeof g);
            error = std::string("-netdev user: could not set up host forwarding rule ") + (r.udp ? "udp" : "tcp") + ":" +
                    h + ":" + std::to_string(r.host_port) + "-" + g + ":" + std::to_string(r.guest_port) +
                    " (is the host port in use?)";
            return nullptr;
        }
    }
    return s;
}

void HostSlirp::send(const uint8_t* frame, size_t len) {
    if (len > INT_MAX) return;
    Impl& m = *impl_;
    if (m.guard && len >= kEthHeader) {
        const uint16_t type = uint16_t(frame[kEthType] << 8 | frame[kEthType + 1]);
        const uint8_t* ip = frame + kEthHeader;
        const size_t ip_len = len - kEthHeader;
        if (type == kEthIpv6 && ip_len >= kIpv6Header && ip[kIpv6NextHeader] == kIpv6Fragment) {
            m.ipv6_dropped++;
            return;
        }
        if (type == kEthIpv4 && Ipv4Reassembler::is_fragment(ip, ip_len)) {
            std::vector<uint8_t>& w = m.whole;
            if (m.reasm.input(ip, ip_len, m.clock.now(), w) != Ipv4Reassembler::Verdict::Done) return;
            w.insert(w.begin(), frame, frame + kEthHeader);  // the completing fragment's link header
            slirp_input(m.slirp, w.data(), int(w.size()));
            return;
        }
    }
    slirp_input(m.slirp, frame, int(len));
}

bool HostSlirp::guards_fragments() const { return impl_->guard; }

HostSlirp::FragmentStats HostSlirp::fragment_stats() const {
    return {impl_->reasm.stats(), impl_->reasm.datagrams(), impl_->ipv6_dropped};
}

void HostSlirp::add_poll_fds(std::vector<pollfd>& fds, int& timeout_ms) {
    uint32_t t = timeout_ms < 0 ? UINT32_MAX : uint32_t(timeout_ms);
    impl_->fill_fds = &fds;
    slirp_pollfds_fill(impl_->slirp, &t, &Impl::add_poll, impl_.get());
    impl_->fill_fds = nullptr;
    timeout_ms = t == UINT32_MAX ? -1 : int(t > INT_MAX ? INT_MAX : t);
}

void HostSlirp::process_poll_fds(const std::vector<pollfd>& fds, bool poll_failed) {
    impl_->reasm.expire(impl_->clock.now());
    impl_->poll_fds = &fds;
    slirp_pollfds_poll(impl_->slirp, poll_failed ? 1 : 0, &Impl::get_revents, impl_.get());
    impl_->poll_fds = nullptr;
}

#else  // built without libslirp

struct HostSlirp::Impl {};
HostSlirp::HostSlirp(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HostSlirp::~HostSlirp() = default;
std::unique_ptr<HostSlirp> HostSlirp::create(const SlirpOptions&, dev::Clock&, std::string& error) {
    error = "-netdev user: this micro86 was built without libslirp (install libslirp-dev and rebuild)";
    return nullptr;
}
void HostSlirp::send(const uint8_t*, size_t) {}
bool HostSlirp::guards_fragments() const { return false; }
HostSlirp::FragmentStats HostSlirp::fragment_stats() const { return {}; }
void HostSlirp::add_poll_fds(std::vector<pollfd>&, int&) {}
void HostSlirp::process_poll_fds(const std::vector<pollfd>&, bool) {}

#endif

}  // namespace m86::host
