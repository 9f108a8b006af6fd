// Ethernet frames built by hand for the network tests and the network fuzzer's seed corpus:
// ARP (RFC 826), IPv4 (RFC 791) with UDP (RFC 768), TCP (RFC 793), ICMP echo (RFC 792), IPv4
// fragments, and IPv6 (RFC 8200) with a fragment header. Plain functions on byte vectors, no test
// framework, so tests/fuzz can use them too. The guest is 52:54:00:12:34:56 / 10.0.2.15, as with
// QEMU's defaults.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace m86::test::frames {

using Frame = std::vector<uint8_t>;

inline const uint8_t kGuestMac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
inline const uint8_t kBroadcastMac[6] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
inline const uint8_t kGuestIp[4] = {10, 0, 2, 15}, kGatewayIp[4] = {10, 0, 2, 2}, kDnsIp[4] = {10, 0, 2, 3};
constexpr uint8_t kUdp = 17, kTcp = 6, kIcmp = 1;
constexpr uint16_t kMf = 0x2000;  // IPv4 More Fragments; the offset is the low 13 bits, in 8-byte units

inline void put16be(uint8_t* p, uint16_t v) { p[0] = uint8_t(v >> 8), p[1] = uint8_t(v); }
inline void put16be(Frame& f, size_t o, uint16_t v) { put16be(&f[o], v); }
inline void put32be(Frame& f, size_t o, uint32_t v) {
    put16be(f, o, uint16_t(v >> 16)), put16be(f, o + 2, uint16_t(v));
}
inline uint16_t get16be(const uint8_t* p) { return uint16_t(p[0] << 8 | p[1]); }
inline uint16_t get16be(const Frame& f, size_t o) { return get16be(&f[o]); }
inline uint32_t get32be(const Frame& f, size_t o) {
    return uint32_t(get16be(f, o)) << 16 | get16be(f, o + 2);
}

// RFC 1071 one's complement sum, folded; `seed` carries a pseudo-header's sum.
inline uint32_t sum16(const uint8_t* p, size_t n, uint32_t seed = 0) {
    uint32_t s = seed;
    for (size_t i = 0; i + 1 < n; i += 2) s += uint32_t(p[i] << 8 | p[i + 1]);
    if (n & 1) s += uint32_t(p[n - 1] << 8);
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return s;
}
inline uint16_t checksum(const uint8_t* p, size_t n, uint32_t seed = 0) {
    return uint16_t(~sum16(p, n, seed));
}

// An Ethernet header (type `type`) followed by `payload`.
inline Frame ether(const uint8_t* dst_mac, uint16_t type, const Frame& payload) {
    Frame f(14 + payload.size());
    std::copy(dst_mac, dst_mac + 6, f.begin());
    std::copy(kGuestMac, kGuestMac + 6, f.begin() + 6);
    put16be(f, 12, type);
    std::copy(payload.begin(), payload.end(), f.begin() + 14);
    return f;
}

// `head` followed by `tail` (vector::insert at the end of a small vector trips GCC 12's
// -Warray-bounds).
inline Frame cat(const Frame& head, const Frame& tail) {
    Frame f(head.size() + tail.size());
    std::copy(head.begin(), head.end(), f.begin());
    std::copy(tail.begin(), tail.end(), f.begin() + long(head.size()));
    return f;
}

// An IPv4 packet: header (with `options`, a multiple of 4 bytes) + `payload`; `frag` is the
// flags/offset field. Checksum filled in.
inline Frame ipv4(uint8_t proto, const uint8_t* src, const uint8_t* dst, uint16_t id, uint16_t frag,
                  const Frame& payload, const Frame& options = {}) {
    const size_t hlen = 20 + options.size();
    Frame p(hlen + payload.size(), 0);
    p[0] = uint8_t(0x40 | hlen / 4), p[8] = 64, p[9] = proto;
    put16be(p, 2, uint16_t(hlen + payload.size()));
    put16be(p, 4, id), put16be(p, 6, frag);
    std::copy(src, src + 4, p.begin() + 12);
    std::copy(dst, dst + 4, p.begin() + 16);
    std::copy(options.begin(), options.end(), p.begin() + 20);
    put16be(p, 10, checksum(p.data(), hlen));
    std::copy(payload.begin(), payload.end(), p.begin() + long(hlen));
    return p;
}

// The TCP/UDP pseudo-header's sum (RFC 793 / RFC 768).
inline uint32_t pseudo_sum(const uint8_t* src, const uint8_t* dst, uint8_t proto, size_t len) {
    Frame ph(12, 0);
    std::copy(src, src + 4, ph.begin());
    std::copy(dst, dst + 4, ph.begin() + 4);
    ph[9] = proto;
    put16be(ph, 10, uint16_t(len));
    return sum16(ph.data(), ph.size());
}

// A UDP datagram (header + data) with its checksum.
inline Frame udp(const uint8_t* src, const uint8_t* dst, uint16_t sport, uint16_t dport, const Frame& data) {
    Frame u(8, 0);
    put16be(u, 0, sport), put16be(u, 2, dport), put16be(u, 4, uint16_t(8 + data.size()));
    u = cat(u, data);
    uint16_t c = checksum(u.data(), u.size(), pseudo_sum(src, dst, kUdp, u.size()));
    put16be(u, 6, c ? c : 0xffff);
    return u;
}

// A TCP segment (20-byte header + data) with its checksum. flags: FIN 1, SYN 2, RST 4, PSH 8, ACK 16.
inline Frame tcp(const uint8_t* src, const uint8_t* dst, uint16_t sport, uint16_t dport, uint32_t seq,
                 uint32_t ack, uint8_t flags, const Frame& data = {}) {
    Frame t(20, 0);
    put16be(t, 0, sport), put16be(t, 2, dport);
    put32be(t, 4, seq), put32be(t, 8, ack);
    t[12] = 5 << 4, t[13] = flags;
    put16be(t, 14, 65535);  // window
    t = cat(t, data);
    put16be(t, 16, checksum(t.data(), t.size(), pseudo_sum(src, dst, kTcp, t.size())));
    return t;
}

// An ICMP echo request (type 8) with `data`.
inline Frame icmp_echo(uint16_t ident, uint16_t seq, const Frame& data) {
    Frame e(8, 0);
    e[0] = 8;
    put16be(e, 4, ident), put16be(e, 6, seq);
    e = cat(e, data);
    put16be(e, 2, checksum(e.data(), e.size()));
    return e;
}

inline Frame bytes(const std::string& s) { return Frame(s.begin(), s.end()); }
// n bytes of a recognisable pattern, from its byte `start` on.
inline Frame pattern(size_t n, uint8_t salt = 0, size_t start = 0) {
    Frame d(n);
    for (size_t i = start; i < start + n; i++) d[i - start] = uint8_t(i * 7 + i / 251 + salt);
    return d;
}

// The IPv4 fragments of the datagram with transport `payload`, `chunk` data bytes each (a
// multiple of 8), as RFC 791 cuts them; each already wrapped in an Ethernet header.
inline std::vector<Frame> fragments(const uint8_t* dst_mac, uint8_t proto, const uint8_t* dst, uint16_t id,
                                    const Frame& payload, size_t chunk) {
    std::vector<Frame> out;
    for (size_t off = 0; off < payload.size(); off += chunk) {
        size_t n = std::min(chunk, payload.size() - off);
        bool more = off + n < payload.size();
        Frame part(payload.begin() + long(off), payload.begin() + long(off + n));
        out.push_back(ether(dst_mac, 0x0800,
                            ipv4(proto, kGuestIp, dst, id, uint16_t((more ? kMf : 0) | off / 8), part)));
    }
    return out;
}

// A frame with one IPv4 fragment: `frag` is the flags/offset field; UDP 10.0.2.15 -> `dst`.
inline Frame ipv4_fragment(uint16_t frag, size_t data_len, uint16_t id = 0x1234,
                           const uint8_t* dst = kGatewayIp) {
    return ether(kBroadcastMac, 0x0800, ipv4(kUdp, kGuestIp, dst, id, frag, pattern(data_len)));
}

// An ARP request from the guest for `target_ip`.
inline Frame arp_request(const uint8_t* target_ip) {
    Frame a(28, 0);
    put16be(a, 0, 1), put16be(a, 2, 0x0800), a[4] = 6, a[5] = 4, put16be(a, 6, 1);
    std::copy(kGuestMac, kGuestMac + 6, a.begin() + 8);
    std::copy(kGuestIp, kGuestIp + 4, a.begin() + 14);
    std::copy(target_ip, target_ip + 4, a.begin() + 24);
    return ether(kBroadcastMac, 0x0806, a);
}

// The guest's link-local IPv6 address (fe80::5054:ff:fe12:3456), slirp's host (fec0::2) and the
// all-routers group (ff02::2).
inline const uint8_t kGuestIp6[16] = {0xfe, 0x80, 0,    0,    0,    0,    0,    0,
                                      0x50, 0x54, 0x00, 0xff, 0xfe, 0x12, 0x34, 0x56};
inline const uint8_t kHostIp6[16] = {0xfe, 0xc0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
inline const uint8_t kAllRouters6[16] = {0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
constexpr uint8_t kIcmp6 = 58, kIpv6Frag = 44;

// An IPv6 packet (RFC 8200) from the guest, hop limit 255 (NDP wants it), in an Ethernet frame.
inline Frame ipv6(uint8_t next_header, const uint8_t* dst, const Frame& payload) {
    Frame p(40, 0);
    p[0] = 0x60;
    put16be(p, 4, uint16_t(payload.size()));
    p[6] = next_header, p[7] = 255;
    std::copy(kGuestIp6, kGuestIp6 + 16, p.begin() + 8);
    std::copy(dst, dst + 16, p.begin() + 24);
    return ether(kBroadcastMac, 0x86dd, cat(p, payload));
}

// An ICMPv6 message (RFC 4443) from the guest to `dst` with its checksum (the pseudo-header holds
// both addresses, the length and next header 58).
inline Frame icmp6(uint8_t type, const uint8_t* dst, const Frame& body) {
    Frame m = cat({type, 0, 0, 0}, body);
    Frame ph(40, 0);
    std::copy(kGuestIp6, kGuestIp6 + 16, ph.begin());
    std::copy(dst, dst + 16, ph.begin() + 16);
    put32be(ph, 32, uint32_t(m.size()));
    ph[39] = kIcmp6;
    put16be(m, 2, checksum(m.data(), m.size(), sum16(ph.data(), ph.size())));
    return ipv6(kIcmp6, dst, m);
}

// An IPv6 packet to slirp's host whose fixed header is followed by a fragment header (RFC 8200
// 4.5) for UDP: `offset` in 8-byte units, `more`.
inline Frame ipv6_fragment(uint16_t offset, bool more, size_t data_len, uint32_t ident = 0x4242) {
    Frame h(8, 0);
    h[0] = kUdp;
    put16be(h, 2, uint16_t(offset << 3 | (more ? 1 : 0)));
    put32be(h, 4, ident);
    return ipv6(kIpv6Frag, kHostIp6, cat(h, pattern(data_len)));
}

}  // namespace m86::test::frames
