// virtio-blk (virtio 1.x spec 5.2) driven by the test driver: configuration space, reads, writes,
// flush and GET_ID against a real temporary image file (through host::HostBlockFile, checked with
// independent pread() calls), read-only refusal, out-of-range requests, discard / write-zeroes, and
// request layouts (split buffers, header and data in one descriptor, indirect tables).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <numeric>

#include "devices/virtio/blk.h"
#include "machine/host_block.h"
#include "test_virtio_driver.h"

using namespace m86::test;
using namespace m86::dev;
using namespace m86::dev::virtio;
using namespace m86::dev::virtio::blk;

namespace {

struct Reply {
    uint8_t status;
    uint32_t used_len;
    std::vector<uint8_t> in;
};

enum class Layout { Split, Joined, Indirect };

// One request: header (+ data the device reads) readable, then `in_len` bytes and the status byte
// writable. Split puts each part in its own descriptor; Joined puts the header and the data in one
// descriptor (and the in-data with the status byte); Indirect uses an indirect table.
Reply request(Driver& d, uint32_t type, uint64_t sector, const std::vector<uint8_t>& out, uint32_t in_len,
              Layout layout = Layout::Split) {
    std::vector<Buf> bufs;
    uint64_t st;
    uint64_t in = 0;
    if (layout == Layout::Joined) {
        uint64_t hdr = d.alloc(16 + out.size());
        d.w32(hdr, type), d.w32(hdr + 4, 0), d.w64(hdr + 8, sector);
        if (!out.empty()) d.fill(hdr + 16, out);
        bufs.push_back({hdr, uint32_t(16 + out.size()), false});
        in = d.alloc(in_len + 1);
        st = in + in_len;
        bufs.push_back({in, in_len + 1, true});
    } else {
        uint64_t hdr = d.alloc(16);
        d.w32(hdr, type), d.w32(hdr + 4, 0), d.w64(hdr + 8, sector);
        bufs.push_back({hdr, 16, false});
        if (!out.empty()) {
            // Two readable data descriptors when there is enough data, to cross a boundary.
            uint64_t a = d.alloc(out.size());
            d.fill(a, out);
            uint32_t first = out.size() > 300 ? 300 : uint32_t(out.size());
            bufs.push_back({a, first, false});
            if (first < out.size()) bufs.push_back({a + first, uint32_t(out.size() - first), false});
        }
        if (in_len) {
            in = d.alloc(in_len);
            bufs.push_back({in, in_len, true});
        }
        st = d.alloc(1);
        bufs.push_back({st, 1, true});
    }
    d.w8(st, 0xee);
    uint16_t head = layout == Layout::Indirect ? d.add_indirect(0, bufs) : d.add(0, bufs);
    d.kick(0);
    uint32_t id = 0, len = 0;
    REQUIRE(d.get_used(0, id, len));
    CHECK(id == head);
    return {uint8_t(d.rd(st, 1)), len, in_len ? d.bytes(in, in_len) : std::vector<uint8_t>{}};
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
    std::vector<uint8_t> v(n);
    for (size_t i = 0; i < n; i++) v[i] = uint8_t(seed + i * 7 + (i >> 8));
    return v;
}

// A temporary image file, removed at the end of the test.
struct TempImage {
    std::string path;
    explicit TempImage(size_t size, uint8_t seed = 0x40) {
        const char* dir = std::getenv("TMPDIR");
        path = std::string(dir && *dir ? dir : "/tmp") + "/m86-virtio-blk-XXXXXX";
        int fd = mkstemp(path.data());
        REQUIRE(fd >= 0);
        auto p = pattern(size, seed);
        REQUIRE(pwrite(fd, p.data(), p.size(), 0) == ssize_t(p.size()));
        close(fd);
    }
    ~TempImage() { unlink(path.c_str()); }
    std::vector<uint8_t> read(uint64_t off, size_t n) const {
        std::vector<uint8_t> v(n);
        int fd = ::open(path.c_str(), O_RDONLY);
        REQUIRE(fd >= 0);
        CHECK(pread(fd, v.data(), n, off_t(off)) == ssize_t(n));
        close(fd);
        return v;
    }
};

// Forwards to a backend and counts flushes.
struct CountingBlock : BlockBackend {
    BlockBackend& inner;
    unsigned flushes = 0;
    explicit CountingBlock(BlockBackend& b) : inner(b) {}
    uint64_t size() const override { return inner.size(); }
    bool read_only() const override { return inner.read_only(); }
    bool read(uint64_t o, void* d, size_t n) override { return inner.read(o, d, n); }
    bool write(uint64_t o, const void* s, size_t n) override { return inner.write(o, s, n); }
    bool flush() override { return ++flushes, inner.flush(); }
    bool can_discard() const override { return inner.can_discard(); }
    bool discard(uint64_t o, uint64_t n) override { return inner.discard(o, n); }
    bool write_zeroes(uint64_t o, uint64_t n, bool u) override { return inner.write_zeroes(o, n, u); }
};

std::vector<uint8_t> dwz_segment(uint64_t sector, uint32_t sectors, uint32_t flags) {
    std::vector<uint8_t> v(16);
    for (int i = 0; i < 8; i++) v[i] = uint8_t(sector >> (8 * i));
    for (int i = 0; i < 4; i++) v[8 + i] = uint8_t(sectors >> (8 * i)), v[12 + i] = uint8_t(flags >> (8 * i));
    return v;
}

}  // namespace

TEST_CASE("virtio-blk: configuration space and features") {
    MemBlock disk(1024 * 1024 + 100);  // a partial last sector counts (reads as zeros past the end)
    VirtioBlk blk(disk);
    Driver d(blk, false);
    CHECK(d.reg(reg::kDeviceId) == 2);
    CHECK(d.config(kCfgCapacity, 4) == 2049);
    CHECK(d.config(kCfgCapacity + 4, 4) == 0);
    CHECK(d.config(kCfgSegMax, 4) == 254);
    CHECK(d.config(kCfgBlkSize, 4) == 512);
    CHECK(d.config(kCfgBlkSize, 1) == 0);  // byte access to the low byte of 512
    CHECK(d.config(kCfgBlkSize + 1, 1) == 2);
    uint64_t f = d.device_features();
    CHECK((f & kFFlush) != 0);
    CHECK((f & kFSegMax) != 0);
    CHECK((f & kFBlkSize) != 0);
    CHECK((f & kFRo) == 0);
    CHECK((f & (kFDiscard | kFWriteZeroes)) == 0);  // the memory disk cannot punch holes
    MemBlock ro(4096, true);
    VirtioBlk rblk(ro);
    Driver r(rblk, true);
    CHECK((r.device_features() & kFRo) != 0);
    CHECK(r.config(kCfgCapacity, 4) == 8);
}

TEST_CASE("virtio-blk: read, write, flush and get-id on a real image file") {
    for (bool legacy : {true, false}) {
        CAPTURE(legacy);
        TempImage img(64 * 512);
        std::string err;
        auto file = m86::host::HostBlockFile::open(img.path, false, err);
        REQUIRE_MESSAGE(file, err);
        CountingBlock disk(*file);
        VirtioBlk blk(disk, "micro86-disk-0");
        Driver d(blk, legacy);
        d.init(kFFlush | kFIndirectDesc, 1);
        CHECK(d.config(kCfgCapacity, 4) == 64);

        // Read what the host put in the image.
        Reply r = request(d, kTIn, 5, {}, 1024);
        CHECK(r.status == kSOk);
        CHECK(r.used_len == 1025);
        CHECK(r.in == img.read(5 * 512, 1024));

        // Write two sectors (split over two data descriptors); the file has them.
        auto data = pattern(1024, 0x99);
        r = request(d, kTOut, 9, data, 0);
        CHECK(r.status == kSOk);
        CHECK(img.read(9 * 512, 1024) == data);
        const auto orig = pattern(64 * 512, 0x40);  // sector 8, next to the write, is untouched
        CHECK(img.read(8 * 512, 512) == std::vector<uint8_t>(orig.begin() + 8 * 512, orig.begin() + 9 * 512));
        // Header and data in one descriptor, data and status in one descriptor.
        auto data2 = pattern(512, 0x31);
        r = request(d, kTOut, 63, data2, 0, Layout::Joined);
        CHECK(r.status == kSOk);
        CHECK(img.read(63 * 512, 512) == data2);
        r = request(d, kTIn, 9, {}, 1024, Layout::Joined);
        CHECK(r.status == kSOk);
        CHECK(r.in == data);
        // Through an indirect table.
        REQUIRE((d.t->negotiated() & kFIndirectDesc) != 0);
        r = request(d, kTIn, 63, {}, 512, Layout::Indirect);
        CHECK(r.status == kSOk);
        CHECK(r.in == data2);

        // Flush reaches the backend (fsync on the host file).
        r = request(d, kTFlush, 0, {}, 0);
        CHECK(r.status == kSOk);
        CHECK(disk.flushes == 1);

        // GET_ID: 20 bytes, the serial NUL-padded.
        r = request(d, kTGetId, 0, {}, 20);
        CHECK(r.status == kSOk);
        std::vector<uint8_t> id(20, 0);
        std::string serial = "micro86-disk-0";
        std::copy(serial.begin(), serial.end(), id.begin());
        CHECK(r.in == id);
        CHECK_FALSE(d.needs_reset());
        CHECK(d.logs.empty());
    }
}

TEST_CASE("virtio-blk: transfers larger than the bounce buffer") {
    MemBlock disk(512 * 1024);
    VirtioBlk blk(disk);
    Driver d(blk, false);
    d.init(0, 1);
    auto data = pattern(300 * 1024, 0x17);
    Reply r = request(d, kTOut, 100, data, 0);
    CHECK(r.status == kSOk);
    CHECK(std::equal(data.begin(), data.end(), disk.data.begin() + 100 * 512));
    r = request(d, kTIn, 100, {}, uint32_t(data.size()));
    CHECK(r.status == kSOk);
    CHECK(r.in == data);
}

TEST_CASE("virtio-blk: a read-only image refuses writes with IOERR and stays unchanged") {
    TempImage img(16 * 512);
    std::string err;
    auto file = m86::host::HostBlockFile::open(img.path, true, err);
    REQUIRE_MESSAGE(file, err);
    CHECK(file->read_only());
    VirtioBlk blk(*file);
    Driver d(blk, false);
    uint64_t f = d.init(kFRo | kFFlush | kFDiscard | kFWriteZeroes, 1);
    CHECK((f & kFRo) != 0);
    CHECK((f & (kFDiscard | kFWriteZeroes)) == 0);
    auto before = img.read(0, 16 * 512);
    Reply r = request(d, kTOut, 2, pattern(512, 1), 0);
    CHECK(r.status == kSIoErr);
    CHECK(request(d, kTWriteZeroes, 0, dwz_segment(0, 1, 0), 0).status == kSUnsupp);
    CHECK(img.read(0, 16 * 512) == before);
    r = request(d, kTIn, 2, {}, 512);
    CHECK(r.status == kSOk);
    CHECK(r.in == img.read(2 * 512, 512));
    CHECK(request(d, kTFlush, 0, {}, 0).status == kSOk);
    CHECK_FALSE(d.needs_reset());
}

TEST_CASE("virtio-blk: out-of-range sectors, partial sectors and unknown types fail without touching the disk") {
    // MemBlock REQUIREs that every backend access lies inside the image.
    MemBlock disk(32 * 512);
    VirtioBlk blk(disk);
    Driver d(blk, true);
    d.init(0, 1);
    CHECK(request(d, kTIn, 32, {}, 512).status == kSIoErr);         // at the capacity
    CHECK(request(d, kTIn, 31, {}, 1024).status == kSIoErr);        // crossing the end
    CHECK(request(d, kTOut, 31, pattern(1024, 3), 0).status == kSIoErr);
    CHECK(request(d, kTIn, ~0ull, {}, 512).status == kSIoErr);      // sector * 512 would overflow
    CHECK(request(d, kTOut, ~0ull >> 9, pattern(512, 3), 0).status == kSIoErr);
    CHECK(request(d, kTIn, 0, {}, 100).status == kSIoErr);          // not a whole sector
    CHECK(request(d, kTOut, 0, pattern(700, 3), 0).status == kSIoErr);
    CHECK(request(d, 99, 0, {}, 512).status == kSUnsupp);           // unknown type
    CHECK(request(d, kTDiscard, 0, dwz_segment(0, 1, 0), 0).status == kSUnsupp);  // not offered
    CHECK(request(d, kTIn, 31, {}, 512).status == kSOk);            // the last sector is fine
    CHECK(std::all_of(disk.data.begin(), disk.data.end(), [](uint8_t b) { return b == 0; }));
    CHECK_FALSE(d.needs_reset());
}

TEST_CASE("virtio-blk: discard and write-zeroes (memory disk with hole punching)") {
    MemBlock disk(64 * 512);
    disk.punch = true;
    auto fill = pattern(64 * 512, 0x55);
    disk.data = fill;
    VirtioBlk blk(disk);
    Driver d(blk, false);
    uint64_t f = d.init(kFDiscard | kFWriteZeroes, 1);
    REQUIRE((f & (kFDiscard | kFWriteZeroes)) == (kFDiscard | kFWriteZeroes));
    CHECK(d.config(kCfgMaxDiscardSeg, 4) == kMaxDwzSegments);
    CHECK(d.config(kCfgMaxWriteZeroesSectors, 4) == kMaxDwzSectors);
    CHECK(d.config(kCfgWriteZeroesMayUnmap, 1) == 1);
    auto zero = [&](uint64_t s, uint64_t n) {
        return std::all_of(disk.data.begin() + long(s * 512), disk.data.begin() + long((s + n) * 512),
                           [](uint8_t b) { return b == 0; });
    };
    // Two segments in one request.
    auto segs = dwz_segment(2, 2, 0);
    auto s2 = dwz_segment(10, 1, kDwzFlagUnmap);
    segs.insert(segs.end(), s2.begin(), s2.end());
    CHECK(request(d, kTWriteZeroes, 0, segs, 0).status == kSOk);
    CHECK(zero(2, 2));
    CHECK(zero(10, 1));
    CHECK(disk.data[4 * 512] == fill[4 * 512]);
    CHECK(request(d, kTDiscard, 0, dwz_segment(20, 4, 0), 0).status == kSOk);
    CHECK(zero(20, 4));
    // 5.2.6.2: unmap is not a discard flag; unknown flags; too many segments; out of range.
    CHECK(request(d, kTDiscard, 0, dwz_segment(30, 1, kDwzFlagUnmap), 0).status == kSUnsupp);
    CHECK(request(d, kTWriteZeroes, 0, dwz_segment(30, 1, 2), 0).status == kSUnsupp);
    std::vector<uint8_t> many;
    for (unsigned i = 0; i <= kMaxDwzSegments; i++) {
        auto s = dwz_segment(40, 1, 0);
        many.insert(many.end(), s.begin(), s.end());
    }
    CHECK(request(d, kTDiscard, 0, many, 0).status == kSUnsupp);
    CHECK(request(d, kTWriteZeroes, 0, dwz_segment(60, 5, 0), 0).status == kSIoErr);
    // A bad second segment rejects the whole request before anything is changed.
    auto bad = dwz_segment(30, 1, 0);
    auto s3 = dwz_segment(64, 1, 0);
    bad.insert(bad.end(), s3.begin(), s3.end());
    CHECK(request(d, kTWriteZeroes, 0, bad, 0).status == kSIoErr);
    CHECK(disk.data[30 * 512] == fill[30 * 512]);
    CHECK_FALSE(d.needs_reset());
}

TEST_CASE("virtio-blk: discard and write-zeroes on a real image file, offered only where holes can be punched") {
    TempImage img(256 * 1024, 0x21);
    std::string err;
    auto file = m86::host::HostBlockFile::open(img.path, false, err);
    REQUIRE_MESSAGE(file, err);
    VirtioBlk blk(*file);
    Driver d(blk, false);
    uint64_t f = d.init(kFDiscard | kFWriteZeroes, 1);
    CHECK(bool(f & kFDiscard) == file->can_discard());
    CHECK(bool(f & kFWriteZeroes) == file->can_discard());
    if (!file->can_discard()) {
        MESSAGE("the file system of " << img.path << " cannot punch holes; discard not offered");
        CHECK(request(d, kTDiscard, 0, dwz_segment(0, 8, 0), 0).status == kSUnsupp);
        return;
    }
    CHECK(request(d, kTWriteZeroes, 0, dwz_segment(16, 16, kDwzFlagUnmap), 0).status == kSOk);
    CHECK(img.read(16 * 512, 16 * 512) == std::vector<uint8_t>(16 * 512, 0));
    CHECK(request(d, kTWriteZeroes, 0, dwz_segment(40, 3, 0), 0).status == kSOk);
    CHECK(img.read(40 * 512, 3 * 512) == std::vector<uint8_t>(3 * 512, 0));
    CHECK(request(d, kTDiscard, 0, dwz_segment(64, 64, 0), 0).status == kSOk);
    CHECK(img.read(64 * 512, 64 * 512) == std::vector<uint8_t>(64 * 512, 0));  // a punched hole reads zeros
    auto p = pattern(256 * 1024, 0x21);
    CHECK(img.read(15 * 512, 512) == std::vector<uint8_t>(p.begin() + 15 * 512, p.begin() + 16 * 512));
    CHECK(img.read(128 * 512, 512) == std::vector<uint8_t>(p.begin() + 128 * 512, p.begin() + 129 * 512));
}

TEST_CASE("virtio-blk: host image errors are clear") {
    std::string err;
    CHECK(m86::host::HostBlockFile::open("/nonexistent/m86-disk.img", false, err) == nullptr);
    CHECK(err.find("/nonexistent/m86-disk.img") != std::string::npos);
    CHECK(err.find("No such file") != std::string::npos);
    err.clear();
    CHECK(m86::host::HostBlockFile::open("/tmp", true, err) == nullptr);
    CHECK(err.find("directory") != std::string::npos);
    // Two writers on one image: the second is refused.
    TempImage img(4096);
    auto a = m86::host::HostBlockFile::open(img.path, false, err);
    REQUIRE(a);
    err.clear();
    CHECK(m86::host::HostBlockFile::open(img.path, false, err) == nullptr);
    CHECK(err.find("locked") != std::string::npos);
}
