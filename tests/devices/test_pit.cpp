// Pit8254 against the 8254 datasheet, timed with the 1.193182 MHz input clock: mode 0-5 OUT
// waveforms and counts, latch and read-back, status byte, BCD, access modes, port 0x61 (gate 2,
// OUT2, refresh toggle), IRQ0 edges from the event queue.
#include <doctest/doctest.h>

#include <vector>

#include "devices/pit8254.h"

using namespace m86::dev;

namespace {
constexpr uint64_t kPitHz = 1193182;
// The virtual time (ns) at which `ticks` input clocks have elapsed since t = 0.
uint64_t at_tick(uint64_t ticks) { return (ticks * 1'000'000'000ull + kPitHz - 1) / kPitHz; }

struct Irq : IrqSink {
    Clock* clock;
    bool level = false;
    std::vector<uint64_t> rises;  // virtual times of rising edges
    explicit Irq(Clock* c) : clock(c) {}
    void set_irq(unsigned, bool l) override {
        if (l && !level) rises.push_back(clock->now());
        level = l;
    }
};
struct Rig {
    Clock clock{[] {
        ClockConfig c;
        c.mode = ClockMode::Deterministic;  // 1 instruction = 1 ns
        return c;
    }()};
    Irq irq{&clock};
    Pit8254 pit{clock, IrqLine{&irq, 0}};
    Rig() { irq.rises.clear(); }  // the power-on level is not an edge
    void out(unsigned port, uint8_t v) {
        if (port == 0x61)
            pit.port61().write(0, 1, v);
        else
            pit.write(port - 0x40, 1, v);
    }
    uint8_t in(unsigned port) {
        return uint8_t(port == 0x61 ? pit.port61().read(0, 1) : pit.read(port - 0x40, 1));
    }
    // Move to the instant `ticks` clocks after t = 0, running due events on the way one by one.
    void to_tick(uint64_t ticks) {
        uint64_t target = at_tick(ticks);
        while (clock.next_deadline() <= target) {
            clock.idle_until(clock.next_deadline());
            clock.run_due();
        }
        clock.idle_until(target);
        clock.run_due();
    }
    uint16_t latch(unsigned ch) {
        out(0x43, uint8_t(ch << 6));
        uint8_t lo = in(0x40 + ch);
        return uint16_t(lo | in(0x40 + ch) << 8);
    }
};
}  // namespace

TEST_CASE("Pit8254: mode 2 rate generator counts at 1.193182 MHz and pulses OUT low at count 1") {
    Rig r;
    r.out(0x43, 0x34);  // channel 0, LSB then MSB, mode 2, binary
    r.out(0x40, 1000 & 0xff);
    r.out(0x40, 1000 >> 8);
    r.to_tick(250);
    CHECK(r.latch(0) == 750);
    r.to_tick(998);
    CHECK(r.pit.out(0));
    r.to_tick(999);
    CHECK(r.latch(0) == 1);
    CHECK_FALSE(r.pit.out(0));
    r.to_tick(1000);
    CHECK(r.pit.out(0));
    CHECK(r.latch(0) == 1000);  // reloaded
    r.to_tick(10 * 1000 + 500);
    REQUIRE(r.irq.rises.size() == 10);  // one rising edge of IRQ0 per period
    for (unsigned i = 0; i < 10; i++) CHECK(r.irq.rises[i] == at_tick(1000 * (i + 1)));
}

TEST_CASE("Pit8254: mode 3 square wave, even and odd counts") {
    Rig r;
    r.out(0x43, 0x36);  // channel 0, word, mode 3
    r.out(0x40, 10);
    r.out(0x40, 0);
    r.to_tick(1);
    CHECK(r.latch(0) == 8);  // decrements by two
    r.to_tick(4);
    CHECK(r.pit.out(0));
    r.to_tick(5);
    CHECK_FALSE(r.pit.out(0));  // high for N/2, low for N/2
    r.to_tick(9);
    CHECK_FALSE(r.pit.out(0));
    r.to_tick(10);
    CHECK(r.pit.out(0));
    r.out(0x43, 0x36);
    r.out(0x40, 9);
    r.out(0x40, 0);  // written at tick 10: odd count, high (N+1)/2 = 5, low (N-1)/2 = 4
    r.to_tick(14);
    CHECK(r.pit.out(0));
    r.to_tick(15);
    CHECK_FALSE(r.pit.out(0));
    r.to_tick(18);
    CHECK_FALSE(r.pit.out(0));
    r.to_tick(19);
    CHECK(r.pit.out(0));
}

TEST_CASE("Pit8254: mode 0 OUT low until terminal count, then high while the counter wraps") {
    Rig r;
    r.out(0x43, 0x30);  // channel 0, word, mode 0
    CHECK_FALSE(r.pit.out(0));
    r.out(0x40, 100);
    CHECK_FALSE(r.pit.out(0));
    r.out(0x40, 0);
    r.to_tick(99);
    CHECK_FALSE(r.irq.level);
    r.to_tick(100);
    CHECK(r.irq.level);
    CHECK(r.irq.rises.size() == 1);
    r.to_tick(105);
    CHECK(r.latch(0) == 0xfffb);
    CHECK(r.irq.level);
    CHECK(r.clock.next_deadline() == kNever);  // nothing left to schedule
    // Writing the first byte of a new count sets OUT low at once.
    r.out(0x40, 50);
    CHECK_FALSE(r.irq.level);
}

TEST_CASE("Pit8254: read-back command latches status and count; NULL COUNT until loaded") {
    Rig r;
    r.out(0x43, 0x34);
    r.out(0x43, 0xe2);                          // read-back: status only, channel 0
    CHECK(r.in(0x40) == (0x80 | 0x40 | 0x34));  // OUT high (mode 2), null count, RW/mode/BCD
    r.out(0x40, 0x00);
    r.out(0x40, 0x01);  // 256
    r.to_tick(10);
    r.out(0x43, 0xc2);  // read-back: count and status, channel 0
    r.to_tick(20);
    CHECK(r.in(0x40) == (0x80 | 0x34));  // status first, NULL COUNT clear
    CHECK(r.in(0x40) == 246);            // then the count latched at tick 10
    CHECK(r.in(0x40) == 0);
    CHECK(r.latch(0) == 236);  // the latch is released
}

TEST_CASE("Pit8254: a counter latch holds until read; a second latch is ignored") {
    Rig r;
    r.out(0x43, 0x34);
    r.out(0x40, 0x00);
    r.out(0x40, 0x10);  // 4096
    r.to_tick(100);
    r.out(0x43, 0x00);
    r.to_tick(200);
    r.out(0x43, 0x00);  // ignored: the first latch has not been read
    CHECK(r.in(0x40) == uint8_t(3996));
    CHECK(r.in(0x40) == (3996 >> 8));
    // Unlatched reads follow the counter.
    r.to_tick(300);
    CHECK(r.in(0x40) == uint8_t(3796));
}

TEST_CASE("Pit8254: LSB-only and MSB-only access, and BCD counting") {
    Rig r;
    r.out(0x43, 0x50);  // channel 1, LSB only, mode 0
    r.out(0x41, 0x80);
    r.to_tick(0x10);
    CHECK(r.in(0x41) == 0x70);
    CHECK(r.in(0x41) == 0x70);  // no flip-flop
    r.out(0x43, 0x60);          // channel 1, MSB only, mode 0
    r.out(0x41, 0x02);          // count 0x0200, written at tick 0x10
    r.to_tick(0x10 + 0x101);
    CHECK(r.in(0x41) == 0x00);  // 0x00ff
    r.out(0x43, 0x71);          // channel 1, word, mode 0, BCD
    r.out(0x41, 0x00);
    r.out(0x41, 0x01);  // 100 decimal
    r.to_tick(0x111 + 1);
    CHECK(r.latch(1) == 0x0099);
    r.to_tick(0x111 + 101);
    CHECK(r.latch(1) == 0x9999);  // wraps in BCD
}

TEST_CASE("Pit8254: channel 2 through port 0x61 as Linux calibrates the TSC") {
    Rig r;
    r.out(0x61, (r.in(0x61) & ~0x02) | 0x01);  // gate high, speaker off
    r.out(0x43, 0xb0);                         // channel 2, word, mode 0
    r.out(0x42, 0x9b);
    r.out(0x42, 0x2e);  // 11931 ticks = 10 ms
    r.to_tick(11930);
    CHECK((r.in(0x61) & 0x20) == 0);
    r.to_tick(11931);
    CHECK((r.in(0x61) & 0x20) == 0x20);
    CHECK(r.irq.rises.empty());  // channel 2 is not IRQ0
    // Gate low pauses mode 0.
    r.out(0x43, 0xb0);
    r.out(0x42, 100);
    r.out(0x42, 0);  // at tick 11931
    r.to_tick(11931 + 40);
    r.out(0x61, 0x00);
    r.to_tick(11931 + 1000);
    CHECK(r.latch(2) == 60);
    r.out(0x61, 0x01);
    r.to_tick(11931 + 1000 + 59);
    CHECK((r.in(0x61) & 0x20) == 0);
    r.to_tick(11931 + 1000 + 60);
    CHECK((r.in(0x61) & 0x20) == 0x20);
}

TEST_CASE("Pit8254: port 0x61 refresh toggle flips every 15.085 us") {
    Rig r;
    r.to_tick(1);
    uint8_t first = r.in(0x61) & 0x10;
    r.to_tick(17);
    CHECK((r.in(0x61) & 0x10) == first);
    r.to_tick(18);
    CHECK((r.in(0x61) & 0x10) != first);
    r.out(0x61, 0xff);
    CHECK((r.in(0x61) & 0x0f) == 0x0f);
}

TEST_CASE("Pit8254: mode 4 strobes OUT low for one clock at count 0") {
    Rig r;
    r.out(0x43, 0x38);  // channel 0, word, mode 4
    r.out(0x40, 50);
    r.out(0x40, 0);
    r.to_tick(49);
    CHECK(r.pit.out(0));
    r.to_tick(50);
    CHECK_FALSE(r.pit.out(0));
    r.to_tick(51);
    CHECK(r.pit.out(0));
    CHECK(r.irq.rises.size() == 1);
}

TEST_CASE("Pit8254: mode 1 one-shot triggered and retriggered by gate 2") {
    Rig r;
    r.out(0x43, 0xb2);  // channel 2, word, mode 1
    r.out(0x42, 30);
    r.out(0x42, 0);
    r.to_tick(100);
    CHECK(r.pit.out(2));  // not triggered yet
    r.out(0x61, 0x01);    // rising gate at tick 100
    CHECK_FALSE(r.pit.out(2));
    r.to_tick(120);
    r.out(0x61, 0x00);
    r.out(0x61, 0x01);  // retrigger at tick 120
    r.to_tick(149);
    CHECK_FALSE(r.pit.out(2));
    r.to_tick(150);
    CHECK(r.pit.out(2));
}

TEST_CASE("Pit8254: mode 2 takes a new count at the end of the current period") {
    Rig r;
    r.out(0x43, 0x34);
    r.out(0x40, 100);
    r.out(0x40, 0);
    r.to_tick(30);
    r.out(0x40, 50);
    r.out(0x40, 0);
    r.to_tick(40);
    CHECK(r.latch(0) == 60);  // still the old count
    r.to_tick(250);
    REQUIRE(r.irq.rises.size() == 4);
    CHECK(r.irq.rises[0] == at_tick(100));
    CHECK(r.irq.rises[1] == at_tick(150));
    CHECK(r.irq.rises[3] == at_tick(250));
}
