// Unit tests for the host side of reliability (docs/reliability.md): inputs read with limits, kernel
// headers checked against the file and guest RAM before anything is allocated, and output files
// touched only once start-up has succeeded. tests/e2e/bad_input.py runs the same cases end to end.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "machine/boot/linux.h"
#include "machine/boot/multiboot.h"
#include "machine/host.h"
#include "machine/host_chardev.h"

using namespace m86;
using namespace m86::machine;

namespace {

template <class T> void put(std::vector<uint8_t>& b, size_t off, T v) { std::memcpy(b.data() + off, &v, sizeof(T)); }

// A bzImage header (protocol 2.15, 4 setup sectors) whose syssize claims `sys_bytes` of kernel,
// followed by `have_bytes` of it.
std::vector<uint8_t> bzimage(uint32_t sys_bytes, size_t have_bytes) {
    std::vector<uint8_t> f(5 * 512 + have_bytes, 0);
    f[0x1f1] = 4;
    put<uint32_t>(f, 0x1f4, (sys_bytes + 15) / 16);
    put<uint16_t>(f, 0x1fe, 0xaa55);
    put<uint32_t>(f, 0x202, 0x53726448);
    put<uint16_t>(f, 0x206, 0x020f);
    f[0x211] = 0x01;
    put<uint16_t>(f, 0x236, 0x0003);
    return f;
}

// A multiboot a.out-kludge header at offset 0, loading at 1 MiB, with `bss_end`.
std::vector<uint8_t> aout(uint32_t bss_end) {
    std::vector<uint8_t> f(96, 0x90);
    const uint32_t magic = boot::mb::kHeaderMagic, flags = boot::mb::kAoutKludge;
    uint32_t h[8] = {magic, flags, uint32_t(-(magic + flags)), 0x100000, 0x100000, 0, bss_end, 0x100020};
    std::memcpy(f.data(), h, sizeof h);
    return f;
}

// A scratch directory, removed with what is in it.
struct TempDir {
    std::string path;
    TempDir() {
        char t[] = "/tmp/m86-rel-XXXXXX";
        REQUIRE(mkdtemp(t));
        path = t;
    }
    ~TempDir() { (void)!std::system(("rm -rf '" + path + "'").c_str()); }
    std::string file(const std::string& name, const std::string& data) const {
        std::string p = path + "/" + name;
        std::ofstream(p, std::ios::binary) << data;
        return p;
    }
};

std::string slurp(const std::string& p) {
    std::ifstream f(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

}  // namespace

TEST_CASE("reliability: read_file takes regular files only, within the size limit") {
    TempDir d;
    std::vector<uint8_t> out;
    std::string err;
    std::string p = d.file("k", "12345678");
    REQUIRE(host::read_file(p, out, err));
    CHECK(out.size() == 8);
    CHECK_FALSE(host::read_file(p, out, err, 7));  // bigger than the cap: refused before reading
    CHECK(err.find("8 bytes") != std::string::npos);
    CHECK_FALSE(host::read_file("/dev/zero", out, err));
    CHECK(err == "is a character device, not a regular file");
    std::string fifo = d.path + "/fifo";
    REQUIRE(mkfifo(fifo.c_str(), 0600) == 0);
    CHECK_FALSE(host::read_file(fifo, out, err));  // returns at once: opened non-blocking
    CHECK(err == "is a FIFO, not a regular file");
    CHECK_FALSE(host::read_file(d.path, out, err));
    CHECK(err == "is a directory, not a regular file");
}

TEST_CASE("reliability: file identities see one file under two names") {
    TempDir d;
    std::string a = d.file("a", "x"), b = d.path + "/b";
    REQUIRE(symlink(a.c_str(), b.c_str()) == 0);
    host::FileId ia, ib, ic;
    REQUIRE(host::file_id(a, ia));
    REQUIRE(host::file_id(b, ib));
    CHECK(ia == ib);
    CHECK(host::file_id(d.file("c", "x"), ic));
    CHECK_FALSE(ia == ic);
    CHECK_FALSE(host::file_id(d.path + "/missing", ic));
}

TEST_CASE("reliability: a file output is created or truncated only by open_output, append=on appends") {
    TempDir d;
    std::string err;
    std::string keep = d.file("keep", "precious\n");
    {
        auto cd = host::open_file_chardev(keep, false, err);
        REQUIRE(cd);
        CHECK(slurp(keep) == "precious\n");  // checked, not touched
        uint8_t x = 'x';
        cd->write(&x, 1);  // before open_output: goes nowhere
        CHECK(slurp(keep) == "precious\n");
    }
    std::string fresh = d.path + "/fresh";
    CHECK(host::open_file_chardev(fresh, false, err));
    CHECK(access(fresh.c_str(), F_OK) != 0);  // not created
    {
        auto cd = host::open_file_chardev(keep, true, err);
        REQUIRE(cd);
        REQUIRE(cd->open_output(err));
        cd->write(reinterpret_cast<const uint8_t*>("more\n"), 5);
    }
    CHECK(slurp(keep) == "precious\nmore\n");
    {
        auto cd = host::open_file_chardev(keep, false, err);
        REQUIRE(cd->open_output(err));
    }
    CHECK(slurp(keep).empty());
    CHECK_FALSE(host::open_file_chardev(d.path, false, err));
    CHECK(err == "is a directory");
    CHECK_FALSE(host::open_file_chardev(d.path + "/no/such/dir/f", false, err));
}

TEST_CASE("reliability: a bzImage shorter than its header says is refused") {
    std::string err;
    CHECK(boot::check_bzimage_size(bzimage(4096, 4096), err));
    CHECK(boot::check_bzimage_size(bzimage(4096, 8192), err));  // trailing bytes (a signature) are fine
    CHECK_FALSE(boot::check_bzimage_size(bzimage(4096, 4000), err));
    CHECK(err.find("truncated bzImage") != std::string::npos);
    auto setup_only = bzimage(0, 0);
    setup_only.resize(1000);
    CHECK_FALSE(boot::check_bzimage_size(setup_only, err));
    boot::KernelImage k;
    CHECK_FALSE(boot::parse_kernel(bzimage(1 << 20, 512), k, err));  // the direct-boot path checks it too
}

TEST_CASE("reliability: multiboot images are bounded by guest RAM before anything is allocated") {
    boot::MultibootImage m;
    std::string err;
    boot::FileReader none = [](const std::string&, std::vector<uint8_t>&, std::string& e) { return e = "no", false; };
    // bss_end_addr 0xffffffff: would be a 4 GiB image; refused against 64 MiB of RAM.
    CHECK_FALSE(boot::build_multiboot(aout(0xffffffff), "k", "", "", none, m, err, 64ull << 20));
    CHECK(err.find("beyond the end of guest RAM") != std::string::npos);
    CHECK(m.buf.empty());
    // A small bss fits.
    CHECK(boot::build_multiboot(aout(0x101000), "k", "", "", none, m, err, 64ull << 20));
}

TEST_CASE("reliability: an ELF segment ending exactly at the top of RAM loads (no null memset)") {
    GuestRam ram(16ull << 20);
    boot::KernelImage k;
    k.format = boot::KernelFormat::PvhElf;
    k.file.assign(0x1000, 0xcc);
    k.pvh_entry = uint32_t(ram.size() - 0x1000);
    k.segments.push_back({ram.size() - 0x1000, 0, 0x1000, 0x1000});
    boot::BootConfig cfg;
    cpu::CpuState s;
    std::string err;
    REQUIRE_MESSAGE(boot::load_linux(k, cfg, ram, s, err), err);
    uint8_t b = 0;
    REQUIRE(ram.read(ram.size() - 1, &b, 1));
    CHECK(b == 0xcc);
}
