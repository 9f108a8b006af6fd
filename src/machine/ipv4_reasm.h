// Ipv4Reassembler: bounded reassembly of IPv4 fragments (RFC 791 section 3.2), pure logic with no
// I/O and no clock of its own. HostSlirp puts it in front of libslirp so that guest fragments never
// reach libslirp's own reassembly, which crashes on some of them (see host_slirp.cpp and
// docs/network.md); anything else that needs whole datagrams can use it the same way.
//
// Usage: for every IPv4 packet (no link header), input(packet, len, now_ns, out):
//   Whole    not a fragment: pass the packet on unchanged (it is not checked further);
//   Held     a fragment was kept; nothing to pass on yet;
//   Done     `out` holds the whole datagram: the first fragment's header with the total length,
//            the flags (MF cleared) and the offset rewritten and the checksum recomputed;
//   Dropped  the fragment was malformed or refused (see below); nothing to pass on.
//
// Bounds and rules (a hostile guest controls every byte):
//   - a datagram holds at most 65535 bytes, header included (RFC 791's total length);
//   - at most `max_datagrams` datagrams and `max_bytes` bytes of fragment data are held at once;
//     a new datagram that finds no room evicts the oldest ones;
//   - a datagram not complete `timeout_ns` after its first fragment arrived is dropped (Linux's
//     ipfrag_time, 30 s). Time is whatever the caller passes as now_ns (HostSlirp: its clock's
//     virtual time), so timeouts are deterministic in deterministic mode. Expiry happens on input()
//     and on expire(); nothing runs in between;
//   - fragments that overlap drop the whole datagram, and every fragment of it that arrives later
//     until it times out (RFC 5722, written for IPv6, applied to IPv4 as Linux does since 4.19).
//     An exact duplicate counts as an overlap (RFC 8200 section 4.5 allows either);
//   - a fragment with MF set whose data is not a multiple of 8 bytes, an empty fragment, a bad
//     header (version, IHL, header checksum, total length) and a fragment that would end beyond
//     65535 bytes ("ping of death") are dropped. Inconsistent ends (data past the last fragment's
//     end, two different last fragments) drop the whole datagram.
// Received data is tracked per 8-byte block (a bitmap of 8192 bits, RFC 815 sizes its holes the
// same way): every fragment but the last starts and ends on a block boundary, so two fragments
// share a block exactly when they share a byte.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace m86::host {

struct Ipv4ReasmLimits {
    size_t max_datagrams = 64;
    size_t max_bytes = 1 << 20;               // fragment data held over all datagrams
    uint64_t timeout_ns = 30'000'000'000ull;  // from a datagram's first fragment
};

class Ipv4Reassembler {
   public:
    enum class Verdict { Whole, Held, Done, Dropped };

    struct Stats {
        uint64_t fragments = 0;     // fragments seen (kept or not)
        uint64_t reassembled = 0;   // datagrams completed
        uint64_t malformed = 0;     // fragments dropped for their own header or size
        uint64_t overlaps = 0;      // datagrams dropped for overlapping fragments
        uint64_t inconsistent = 0;  // datagrams dropped for contradicting ends or oversize
        uint64_t timeouts = 0;      // datagrams dropped incomplete at their timeout
        uint64_t evicted = 0;       // datagrams dropped to make room
    };

    explicit Ipv4Reassembler(const Ipv4ReasmLimits& limits = {}) : limits_(limits) {}

    // Whether `packet` is an IPv4 fragment by its flags/offset field (MF set or an offset), the
    // test input() applies. Packets shorter than a minimal IPv4 header are never fragments.
    static bool is_fragment(const uint8_t* packet, size_t len);

    Verdict input(const uint8_t* packet, size_t len, uint64_t now_ns, std::vector<uint8_t>& out);
    // Drops the datagrams whose timeout has passed.
    void expire(uint64_t now_ns);

    size_t datagrams() const { return pending_.size(); }
    size_t bytes() const { return bytes_; }
    const Stats& stats() const { return stats_; }

   private:
    static constexpr size_t kBlocks = 65536 / 8;

    struct Datagram {
        uint32_t src = 0, dst = 0;
        uint16_t id = 0;
        uint8_t proto = 0;
        uint64_t first_ns = 0;
        bool poisoned = false;  // overlap seen: drop what else comes until the timeout
        bool have_last = false;
        uint32_t end = 0;             // the last fragment's end (have_last), else the largest seen
        uint32_t received = 0;        // data bytes held (no overlaps, so their sum is the coverage)
        std::vector<uint8_t> header;  // the offset-0 fragment's header, once it arrived
        std::vector<uint8_t> data;    // payload bytes at their offsets
        std::array<uint64_t, kBlocks / 64> blocks = {};
    };

    // Frees a datagram's data and marks it poisoned: it stays to swallow the fragments still to
    // come until it times out.
    void poison(Datagram& d);
    void erase(size_t index);
    // Evicts the oldest datagrams other than `keep` until `more` bytes fit; false if they cannot.
    bool make_room(size_t more, const Datagram* keep);

    Ipv4ReasmLimits limits_;
    std::vector<std::unique_ptr<Datagram>> pending_;  // oldest first
    size_t bytes_ = 0;
    Stats stats_;
};

}  // namespace m86::host
