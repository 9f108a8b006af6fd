// Ipv4Reassembler (src/machine/ipv4_reasm.h): whole datagrams out of fragments in any order, the
// rebuilt header, and the bounds a hostile guest runs into - timeouts, the caps on datagrams and
// bytes, overlaps (RFC 5722), malformed and oversized fragments.
#include <doctest/doctest.h>

#include <random>

#include "devices/net_frames.h"
#include "machine/ipv4_reasm.h"

using namespace m86;
using namespace m86::test::frames;
using host::Ipv4Reassembler;
using V = Ipv4Reassembler::Verdict;

namespace {

constexpr uint64_t kSec = 1'000'000'000ull;

// One fragment as a bare IPv4 packet: `data_len` bytes of datagram `id`'s pattern at `off` bytes.
Frame frag(uint16_t id, uint32_t off, size_t data_len, bool more, const uint8_t* src = kGuestIp,
           const Frame& options = {}) {
    return ipv4(kUdp, src, kGatewayIp, id, uint16_t((more ? kMf : 0) | off / 8),
                pattern(data_len, uint8_t(id), off), options);
}

// The IPv4 fragments of datagram `id` with `len` data bytes, cut every `chunk` bytes.
std::vector<Frame> split(uint16_t id, size_t len, size_t chunk) {
    std::vector<Frame> out;
    for (size_t off = 0; off < len; off += chunk)
        out.push_back(frag(id, uint32_t(off), std::min(chunk, len - off), off + chunk < len));
    return out;
}

V feed(Ipv4Reassembler& r, const Frame& p, uint64_t now, Frame& out) {
    return r.input(p.data(), p.size(), now, out);
}

// Checks `out` is datagram `id` whole: a valid header, the total length, no MF/offset, the data.
void check_whole(const Frame& out, uint16_t id, size_t len, size_t hlen = 20) {
    REQUIRE(out.size() == hlen + len);
    CHECK(out[0] == 0x40 + hlen / 4);
    CHECK(get16be(out, 2) == hlen + len);
    CHECK(get16be(out, 4) == id);
    CHECK(get16be(out, 6) == 0);
    CHECK(checksum(out.data(), hlen) == 0);
    CHECK(Frame(out.begin() + long(hlen), out.end()) == pattern(len, uint8_t(id)));
}

}  // namespace

TEST_CASE("ipv4 reassembly: non-fragments pass as they are") {
    Ipv4Reassembler r;
    Frame out;
    Frame whole = ipv4(kUdp, kGuestIp, kGatewayIp, 1, 0, pattern(100));
    CHECK_FALSE(Ipv4Reassembler::is_fragment(whole.data(), whole.size()));
    CHECK(feed(r, whole, 0, out) == V::Whole);
    Frame df = ipv4(kUdp, kGuestIp, kGatewayIp, 1, 0x4000, pattern(100));  // DF alone is not a fragment
    CHECK(feed(r, df, 0, out) == V::Whole);
    Frame tiny(12, 0);
    CHECK(feed(r, tiny, 0, out) == V::Whole);
    CHECK(r.stats().fragments == 0);
    CHECK(r.datagrams() == 0);
}

TEST_CASE("ipv4 reassembly: in order, out of order and shuffled fragments give the datagram") {
    Frame out;
    SUBCASE("in order") {
        Ipv4Reassembler r;
        auto f = split(7, 4000, 1480);
        CHECK(feed(r, f[0], 0, out) == V::Held);
        CHECK(feed(r, f[1], 0, out) == V::Held);
        CHECK(feed(r, f[2], 0, out) == V::Done);
        check_whole(out, 7, 4000);
        CHECK(r.datagrams() == 0);
        CHECK(r.bytes() == 0);
    }
    SUBCASE("last first (what libslirp 4.7.0 crashes on)") {
        Ipv4Reassembler r;
        auto f = split(8, 3000, 1480);
        CHECK(feed(r, f[2], 0, out) == V::Held);
        CHECK(feed(r, f[1], 0, out) == V::Held);
        CHECK(feed(r, f[0], 0, out) == V::Done);
        check_whole(out, 8, 3000);
    }
    SUBCASE("the largest datagram, in 8-byte pieces, shuffled") {
        Ipv4Reassembler r;
        const size_t len = 65535 - 20;
        auto f = split(9, len, 8);
        std::mt19937 rng(19);
        std::shuffle(f.begin(), f.end(), rng);
        for (size_t i = 0; i + 1 < f.size(); i++) REQUIRE(feed(r, f[i], 0, out) == V::Held);
        CHECK(feed(r, f.back(), 0, out) == V::Done);
        check_whole(out, 9, len);
    }
    SUBCASE("interleaved datagrams, told apart by source, destination, protocol and id") {
        Ipv4Reassembler r;
        const uint8_t other[4] = {10, 0, 2, 16};
        Frame a0 = frag(5, 0, 16, true), a1 = frag(5, 16, 8, false);
        Frame b0 = frag(5, 0, 16, true, other), b1 = frag(5, 16, 8, false, other);
        Frame c0 = frag(6, 0, 16, true);
        CHECK(feed(r, a0, 0, out) == V::Held);
        CHECK(feed(r, b0, 0, out) == V::Held);
        CHECK(feed(r, c0, 0, out) == V::Held);
        CHECK(r.datagrams() == 3);
        CHECK(feed(r, b1, 0, out) == V::Done);
        CHECK(std::equal(out.begin() + 12, out.begin() + 16, other));
        CHECK(feed(r, a1, 0, out) == V::Done);
        check_whole(out, 5, 24);
        CHECK(r.datagrams() == 1);
    }
    SUBCASE("the first fragment's header and options are the datagram's; link padding is ignored") {
        Ipv4Reassembler r;
        const Frame nop_options = {1, 1, 1, 0};  // NOP NOP NOP EOL (RFC 791 3.1)
        Frame f0 = frag(3, 0, 24, true, kGuestIp, nop_options);
        Frame f1 = frag(3, 24, 5, false);
        f1.resize(f1.size() + 17, 0xee);  // Ethernet pads short frames
        CHECK(feed(r, f1, 0, out) == V::Held);
        CHECK(feed(r, f0, 0, out) == V::Done);
        check_whole(out, 3, 29, 24);
    }
}

TEST_CASE("ipv4 reassembly: an incomplete datagram times out 30 s after its first fragment") {
    Ipv4Reassembler r;
    Frame out;
    auto f = split(11, 3000, 1480);
    CHECK(feed(r, f[2], 100 * kSec, out) == V::Held);  // a lone last fragment
    r.expire(130 * kSec - 1);
    CHECK(r.datagrams() == 1);
    r.expire(130 * kSec);
    CHECK(r.datagrams() == 0);
    CHECK(r.bytes() == 0);
    CHECK(r.stats().timeouts == 1);

    // The clock runs from the first fragment, not the latest: pieces at 0 s and 20 s, the rest
    // at 30 s starts a new datagram instead of completing the old one.
    CHECK(feed(r, f[0], 200 * kSec, out) == V::Held);
    CHECK(feed(r, f[1], 220 * kSec, out) == V::Held);
    CHECK(feed(r, f[2], 230 * kSec, out) == V::Held);
    CHECK(r.stats().timeouts == 2);
    CHECK(r.datagrams() == 1);
    CHECK(feed(r, f[0], 231 * kSec, out) == V::Held);
    CHECK(feed(r, f[1], 231 * kSec, out) == V::Done);
    check_whole(out, 11, 3000);
}

TEST_CASE("ipv4 reassembly: overlapping fragments drop the whole datagram (RFC 5722)") {
    Frame out;
    SUBCASE("partial overlap") {
        Ipv4Reassembler r;
        CHECK(feed(r, frag(1, 0, 16, true), 0, out) == V::Held);
        CHECK(feed(r, frag(1, 8, 16, true), 0, out) == V::Dropped);
        CHECK(r.stats().overlaps == 1);
        CHECK(r.bytes() == 0);
        // Later fragments of that datagram, even ones that would complete it, are dropped too...
        CHECK(feed(r, frag(1, 16, 8, false), kSec, out) == V::Dropped);
        CHECK(feed(r, frag(1, 0, 16, true), kSec, out) == V::Dropped);
        // ...until it times out; then the same id starts afresh.
        CHECK(feed(r, frag(1, 0, 16, true), 30 * kSec, out) == V::Held);
        CHECK(feed(r, frag(1, 16, 8, false), 30 * kSec, out) == V::Done);
        check_whole(out, 1, 24);
        CHECK(r.stats().timeouts == 0);  // a dropped datagram's expiry is not a timeout
    }
    SUBCASE("an exact duplicate") {
        Ipv4Reassembler r;
        CHECK(feed(r, frag(2, 0, 16, true), 0, out) == V::Held);
        CHECK(feed(r, frag(2, 0, 16, true), 0, out) == V::Dropped);
        CHECK(feed(r, frag(2, 16, 8, false), 0, out) == V::Dropped);
    }
    SUBCASE("a last fragment over the end of an earlier one") {
        Ipv4Reassembler r;
        CHECK(feed(r, frag(3, 0, 16, true), 0, out) == V::Held);
        CHECK(feed(r, frag(3, 8, 12, false), 0, out) == V::Dropped);
        CHECK(r.stats().overlaps == 1);
    }
    SUBCASE("the teardrop shape: a fragment inside another") {
        Ipv4Reassembler r;
        CHECK(feed(r, frag(4, 0, 64, true), 0, out) == V::Held);
        CHECK(feed(r, frag(4, 24, 4, false), 0, out) == V::Dropped);
    }
}

TEST_CASE("ipv4 reassembly: malformed, oversized and contradictory fragments are refused") {
    Ipv4Reassembler r;
    Frame out;
    auto malformed = [&](Frame p, const char* what) {
        CAPTURE(what);
        uint64_t before = r.stats().malformed;
        CHECK(feed(r, p, 0, out) == V::Dropped);
        CHECK(r.stats().malformed == before + 1);
    };
    malformed(frag(1, 0, 12, true), "MF with data not a multiple of 8 bytes");
    malformed(frag(1, 800, 0, false), "no data");
    Frame bad_sum = frag(1, 0, 16, true);
    bad_sum[10] ^= 1;
    malformed(bad_sum, "header checksum");
    Frame short_ihl = frag(1, 0, 16, true);
    short_ihl[0] = 0x44;
    malformed(short_ihl, "IHL 4");
    Frame cut = frag(1, 0, 16, true);
    cut.resize(cut.size() - 1);
    malformed(cut, "total length past the packet");
    // Ping of death: offset 8189 * 8 plus 100 bytes ends past 65535 - 20.
    malformed(frag(1, 8189 * 8, 100, false), "ending beyond 65535 bytes");
    CHECK(r.datagrams() == 0);

    // Contradictory ends poison the datagram.
    CHECK(feed(r, frag(9, 0, 16, true), 0, out) == V::Held);
    CHECK(feed(r, frag(9, 32, 8, false), 0, out) == V::Held);    // ends at 40
    CHECK(feed(r, frag(9, 40, 8, true), 0, out) == V::Dropped);  // data past the end
    CHECK(r.stats().inconsistent == 1);
    CHECK(feed(r, frag(10, 64, 8, true), 0, out) == V::Held);
    CHECK(feed(r, frag(10, 16, 8, false), 0, out) == V::Dropped);  // a last fragment before data
    CHECK(feed(r, frag(11, 16, 8, false), 0, out) == V::Held);
    CHECK(feed(r, frag(11, 32, 8, false), 0, out) == V::Dropped);  // a second, different last fragment
    CHECK(r.stats().inconsistent == 3);
    CHECK(r.bytes() == 0);
    // A first fragment with 40 bytes of options would make the datagram 65535 - 20 + 60 long.
    CHECK(feed(r, frag(12, 65512, 3, false), 0, out) == V::Held);
    CHECK(feed(r, frag(12, 8, 65504, true), 0, out) == V::Held);
    CHECK(feed(r, frag(12, 0, 8, true, kGuestIp, Frame(40, 1)), 0, out) == V::Dropped);
    CHECK(r.stats().inconsistent == 4);
}

TEST_CASE("ipv4 reassembly: the caps on datagrams and bytes evict the oldest") {
    Frame out;
    SUBCASE("datagrams") {
        host::Ipv4ReasmLimits lim;
        lim.max_datagrams = 4;
        Ipv4Reassembler r(lim);
        for (uint16_t id = 0; id < 5; id++) CHECK(feed(r, frag(id, 0, 16, true), id, out) == V::Held);
        CHECK(r.datagrams() == 4);
        CHECK(r.stats().evicted == 1);
        CHECK(feed(r, frag(0, 16, 8, false), 10, out) == V::Held);  // id 0 was the oldest: gone
        CHECK(feed(r, frag(4, 16, 8, false), 10, out) == V::Done);
        check_whole(out, 4, 24);
    }
    SUBCASE("bytes") {
        host::Ipv4ReasmLimits lim;
        lim.max_bytes = 100'000;
        Ipv4Reassembler r(lim);
        CHECK(feed(r, frag(1, 40000, 8, true), 0, out) == V::Held);
        CHECK(r.bytes() >= 40008);
        CHECK(feed(r, frag(2, 40000, 8, true), 1, out) == V::Held);
        CHECK(feed(r, frag(3, 40000, 8, true), 2, out) == V::Held);  // no room for three: id 1 goes
        CHECK(r.stats().evicted == 1);
        CHECK(r.datagrams() == 2);
        CHECK(r.bytes() <= lim.max_bytes);
        lim.max_bytes = 1000;  // smaller than one datagram can grow: its fragments are refused
        Ipv4Reassembler small(lim);
        CHECK(feed(small, frag(1, 2000, 8, true), 0, out) == V::Dropped);
        CHECK(small.datagrams() == 0);
        CHECK(small.bytes() == 0);
    }
    SUBCASE("random fragments never exceed the caps") {
        host::Ipv4ReasmLimits lim;
        lim.max_datagrams = 8;
        lim.max_bytes = 200'000;
        Ipv4Reassembler r(lim);
        std::mt19937 rng(5722);
        uint64_t now = 0;
        for (int i = 0; i < 20000; i++) {
            uint16_t id = uint16_t(rng() % 24);
            uint32_t off = uint32_t(rng() % 8192) * 8;
            size_t n = 8 * (1 + rng() % 200);
            bool more = rng() % 4 != 0;
            if (off + n > 65515) continue;
            now += rng() % (kSec / 10);
            feed(r, frag(id, off, more ? n : n - rng() % 8, more), now, out);
            REQUIRE(r.datagrams() <= lim.max_datagrams);
            REQUIRE(r.bytes() <= lim.max_bytes);
        }
        CHECK(r.stats().evicted > 0);
        CHECK(r.stats().overlaps > 0);
    }
}
