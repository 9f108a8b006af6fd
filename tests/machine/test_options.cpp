// Unit tests for the QEMU-compatible command line.
#include <doctest/doctest.h>

#include "machine/options.h"

using namespace m86::machine;

namespace {
std::optional<VmConfig> parse(std::vector<std::string> a, std::string* err = nullptr) {
    std::string e;
    auto c = parse_options(a, e);
    if (err) *err = e;
    return c;
}
}  // namespace

TEST_CASE("options: QEMU's microvm example command line parses with the same meaning") {
    std::string err;
    auto c = parse({"-M", "microvm,x-option-roms=off,pit=off,pic=off,isa-serial=off,rtc=off", "-enable-kvm", "-cpu",
                    "host", "-m", "512m", "-smp", "2", "-kernel", "vmlinux", "-append", "console=hvc0 root=/dev/vda",
                    "-nodefaults", "-no-user-config", "-nographic"},
                   &err);
    REQUIRE_MESSAGE(c, err);
    CHECK(c->pit == OnOffAuto::Off);
    CHECK(c->pic == OnOffAuto::Off);
    CHECK(c->rtc == OnOffAuto::Off);
    CHECK_FALSE(c->isa_serial);
    CHECK_FALSE(c->option_roms);
    CHECK(c->ram_size == 512ull << 20);
    CHECK(c->cpus == 2);
    CHECK(c->kernel == "vmlinux");
    CHECK(c->append == "console=hvc0 root=/dev/vda");
    CHECK(c->serials.empty());  // -nodefaults and no -serial
    REQUIRE(c->notes.size() == 1);
    CHECK(c->notes[0].find("software") != std::string::npos);
}

TEST_CASE("options: sizes") {
    uint64_t b;
    CHECK((parse_size("512M", b) && b == 512ull << 20));
    CHECK((parse_size("2G", b) && b == 2ull << 30));
    CHECK((parse_size("1.5G", b) && b == 3ull << 29));
    CHECK((parse_size("256", b) && b == 256ull << 20));  // MiB by default, as QEMU
    CHECK_FALSE(parse_size("12Q", b));
    CHECK_FALSE(parse_size("", b));
    CHECK_FALSE(parse_size("-5", b));
}

TEST_CASE("options: every bad option is one clear error naming it") {
    std::string err;
    CHECK_FALSE(parse({"-M", "pc"}, &err));
    CHECK(err.find("microvm") != std::string::npos);
    CHECK_FALSE(parse({"-M", "microvm,acpi=on"}, &err));
    CHECK(err.find("acpi=off") != std::string::npos);
    CHECK_FALSE(parse({"-M", "microvm,frobnicate=on"}, &err));
    CHECK(err.find("frobnicate") != std::string::npos);
    CHECK_FALSE(parse({"-m", "lots"}, &err));
    CHECK(err.find("-m lots") != std::string::npos);
    CHECK_FALSE(parse({"-smp", "0"}, &err));
    CHECK_FALSE(parse({"-kernel"}, &err));
    CHECK(err.find("needs a value") != std::string::npos);
    CHECK_FALSE(parse({"-usb"}, &err));
    CHECK(err.find("-usb") != std::string::npos);
    CHECK_FALSE(parse({"-serial", "tcp::4444"}, &err));
    CHECK_FALSE(parse({"-serial", "chardev:nope"}, &err));
    CHECK(err.find("nope") != std::string::npos);
    CHECK_FALSE(parse({"-initrd", "x"}, &err));
}

TEST_CASE("options: serial backends and chardevs") {
    auto c = parse({"-kernel", "k"});
    REQUIRE(c);
    REQUIRE(c->serials.size() == 1);
    CHECK(c->serials[0].kind == CharDevSpec::Kind::Stdio);
    c = parse({"-kernel", "k", "-serial", "file:/tmp/out.txt"});
    REQUIRE(c);
    CHECK(c->serials[0].kind == CharDevSpec::Kind::File);
    CHECK(c->serials[0].path == "/tmp/out.txt");
    c = parse({"-chardev", "stdio,id=con0", "-serial", "chardev:con0"});
    REQUIRE(c);
    CHECK(c->serials[0].kind == CharDevSpec::Kind::Stdio);
    c = parse({"-icount", "shift=3"});
    REQUIRE(c);
    CHECK(c->deterministic);
    CHECK(c->icount_shift == 3);
}
