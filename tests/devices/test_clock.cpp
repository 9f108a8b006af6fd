// Clock: deterministic and realtime virtual time, the timer queue's order, re-arming, idle jumps.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "devices/clock.h"

using namespace m86::dev;

namespace {
struct FakeHost : HostTime {
    uint64_t mono = 5'000'000'000, wall = 1'600'000'000ull * kNsPerSec;
    uint64_t monotonic_ns() override { return mono; }
    uint64_t wall_ns() override { return wall; }
};
ClockConfig det(uint64_t ps = 1000) {
    ClockConfig c;
    c.mode = ClockMode::Deterministic;
    c.ps_per_instruction = ps;
    return c;
}
}  // namespace

TEST_CASE("Clock: deterministic time counts instructions only") {
    FakeHost host;
    Clock c(det(2500), &host);  // 2.5 ns per instruction
    CHECK(c.now() == 0);
    c.advance(3);
    CHECK(c.now() == 7);  // 7.5 ns, truncated
    c.advance(1);
    CHECK(c.now() == 10);
    host.mono += kNsPerSec;  // the host clock is irrelevant
    CHECK(c.now() == 10);
    CHECK(c.wall_epoch_ns() == 1704067200ull * kNsPerSec);
    c.idle_until(1000);
    CHECK(c.now() == 1000);
    c.idle_until(500);  // never backwards
    CHECK(c.now() == 1000);
}

TEST_CASE("Clock: realtime follows the host monotonic clock and starts at the wall clock") {
    FakeHost host;
    Clock c({}, &host);
    CHECK(c.now() == 0);
    CHECK(c.wall_epoch_ns() == host.wall);
    host.mono += 1234;
    CHECK(c.now() == 1234);
    c.advance(1'000'000);  // ignored
    CHECK(c.now() == 1234);
    host.mono -= 100;  // a host hiccup does not move virtual time backwards
    CHECK(c.now() == 1234);
}

TEST_CASE("Clock: timers fire in deadline order, ties in arming order") {
    Clock c(det());
    std::string order;
    Timer a(c, [&](uint64_t) { order += 'a'; });
    Timer b(c, [&](uint64_t) { order += 'b'; });
    Timer d(c, [&](uint64_t) { order += 'd'; });
    a.arm(300);
    b.arm(100);
    d.arm(300);
    CHECK(c.next_deadline() == 100);
    c.advance(99);
    CHECK_FALSE(c.due());
    CHECK(c.run_due() == 0);
    c.advance(1);
    CHECK(c.due());
    CHECK(c.run_due() == 1);
    CHECK(order == "b");
    CHECK(c.next_deadline() == 300);
    c.advance(1000);
    CHECK(c.run_due() == 2);
    CHECK(order == "bad");
    CHECK(c.next_deadline() == kNever);
}

TEST_CASE("Clock: cancel, re-arm, and periodic re-arming from the deadline") {
    Clock c(det());
    std::vector<uint64_t> fired;
    Timer p(c, [](uint64_t) {});
    Timer* self = nullptr;
    Timer periodic(c, [&](uint64_t when) {
        fired.push_back(when);
        self->arm(when + 100);
    });
    self = &periodic;
    periodic.arm(100);
    p.arm(50);
    p.cancel();
    CHECK_FALSE(p.armed());
    CHECK(c.next_deadline() == 100);
    p.arm(70);
    p.arm(500);  // replaces the earlier expiry
    CHECK(c.next_deadline() == 100);
    c.advance(350);
    c.run_due();
    CHECK(fired == std::vector<uint64_t>{100, 200, 300});
    CHECK(periodic.deadline() == 400);
    {
        Timer scoped(c, [](uint64_t) {});
        scoped.arm(10);
        CHECK(c.next_deadline() == 10);
    }  // destroyed: removed from the queue
    CHECK(c.next_deadline() == 400);
}

TEST_CASE("Clock: TscScale converts both ways without drift") {
    TscScale tsc{2'500'000'000ull};
    CHECK(tsc.ticks(kNsPerSec) == 2'500'000'000ull);
    CHECK(tsc.ticks(1) == 2);
    CHECK(tsc.ns_at(5) == 2);
    CHECK(tsc.ticks(tsc.ns_at(12345677)) >= 12345677);
    CHECK(tsc.ticks(tsc.ns_at(12345677) - 1) < 12345677);
    CHECK(tsc.ns_at(~0ull) > 0);
}
