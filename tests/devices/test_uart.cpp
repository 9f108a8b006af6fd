// Uart16550 against the PC16550D datasheet: reset values, Linux 8250 probes, divisor latch, IIR
// priority order, FIFO trigger levels, character timeout, overrun, OUT2 gating, loopback.
#include <doctest/doctest.h>

#include <string>

#include "devices/uart16550.h"

using namespace m86::dev;
using namespace m86::dev::uart;

namespace {
struct Line : IrqSink {
    bool level = false;
    int rises = 0;
    void set_irq(unsigned, bool l) override {
        if (l && !level) rises++;
        level = l;
    }
};
struct Host : SerialBackend {
    std::string out;
    int ready = 0;
    void transmit(uint8_t b) override { out += char(b); }
    void rx_ready() override { ready++; }
};
struct Rig {
    Clock clock{[] {
        ClockConfig c;
        c.mode = ClockMode::Deterministic;
        return c;
    }()};
    Line line;
    Host host;
    Uart16550 u{clock, IrqLine{&line, 4}, &host};
    uint8_t in(unsigned r) { return uint8_t(u.read(r, 1)); }
    void out(unsigned r, uint8_t v) { u.write(r, 1, v); }
    void tick(uint64_t ns) {
        clock.advance(ns);  // 1 instruction = 1 ns
        clock.run_due();
    }
};
}  // namespace

TEST_CASE("Uart16550: reset values (datasheet Table III)") {
    Rig r;
    CHECK(r.in(kIer) == 0);
    CHECK(r.in(kIirFcr) == 0x01);
    CHECK(r.in(kLcr) == 0);
    CHECK(r.in(kMcr) == 0);
    CHECK(r.in(kLsr) == 0x60);  // THRE and TEMT
    CHECK((r.in(kMsr)&0x0f) == 0);
}

TEST_CASE("Uart16550: the probes of Linux's 8250 autoconfig pass as a 16550A") {
    Rig r;
    // IER: low nibble read/write, high nibble (incl. the XScale UUE bit 6) reads 0.
    r.out(kIer, 0);
    CHECK((r.in(kIer)&0x0f) == 0);
    r.out(kIer, 0x0f);
    CHECK((r.in(kIer)&0x0f) == 0x0f);
    r.out(kIer, 0x40);
    CHECK(r.in(kIer) == 0);
    r.out(kIer, 0);
    // Loopback: MCR = LOOP | OUT2 | RTS -> MSR high nibble = DCD | CTS.
    r.out(kMcr, kMcrLoop | 0x0a);
    CHECK((r.in(kMsr)&0xf0) == 0x90);
    r.out(kMcr, 0);
    // FIFO detection: FCR = 1 -> IIR bits 7:6 = 11 (16550A; a 16550 gives 10, a 16450 00).
    r.out(kLcr, 0xbf);
    r.out(kIirFcr, 0);
    r.out(kLcr, 0);
    r.out(kIirFcr, kFcrEnable);
    CHECK((r.in(kIirFcr) >> 6) == 3);
    // No 64-byte FIFO (16750 test): IIR bit 5 stays 0 with FCR bit 5, with and without DLAB.
    r.out(kIirFcr, kFcrEnable | 0x20);
    CHECK((r.in(kIirFcr)&0x20) == 0);
    r.out(kLcr, 0x80);
    r.out(kIirFcr, kFcrEnable | 0x20);
    CHECK((r.in(kIirFcr)&0x20) == 0);
    r.out(kLcr, 0);
    // Scratch register.
    r.out(kScr, 0xa5);
    CHECK(r.in(kScr) == 0xa5);
    r.out(kScr, 0x5a);
    CHECK(r.in(kScr) == 0x5a);
    CHECK(r.in(kLsr) != 0xff);
}

TEST_CASE("Uart16550: the divisor latch hides RBR/THR and IER while DLAB is set") {
    Rig r;
    r.out(kLcr, kLcrDlab | 0x03);
    r.out(kDll, 0x01);
    r.out(kDlm, 0x02);
    CHECK(r.in(kDll) == 0x01);
    CHECK(r.in(kDlm) == 0x02);
    CHECK(r.host.out.empty());
    r.out(kLcr, 0x03);
    CHECK(r.in(kIer) == 0);
    r.out(kRbrThr, 'h');
    r.out(kRbrThr, 'i');
    CHECK(r.host.out == "hi");
    CHECK(r.u.state().divisor == 0x0201);
}

TEST_CASE("Uart16550: IIR reports sources in priority order and each clears its own way") {
    Rig r;
    r.out(kIirFcr, kFcrEnable);  // trigger level 1
    r.out(kMcr, kMcrOut2 | kMcrDtr);
    r.out(kIer, kIerRda | kIerThre | kIerRls | kIerMsi);  // THRE pending at once (THR empty)
    r.u.receive('a');
    r.u.receive('b');
    CHECK(r.line.level);
    // Overrun is impossible with two bytes in a 16-deep FIFO: make a line-status error with a break.
    r.u.receive_break();
    r.out(kMcr, kMcrOut2);         // DTR drops: no delta in normal mode (DSR is an external input)
    CHECK(r.in(kIirFcr) == 0xc4);  // received data (the break is not at the top yet)
    CHECK(r.in(kRbrThr) == 'a');
    CHECK(r.in(kRbrThr) == 'b');
    CHECK(r.in(kIirFcr) == 0xc6);     // the break reached the top: line status
    CHECK((r.in(kLsr)&kLsrBi) != 0);  // reading LSR clears it
    CHECK(r.in(kIirFcr) == 0xc4);     // the break character itself is still data
    CHECK(r.in(kRbrThr) == 0);
    CHECK(r.in(kIirFcr) == 0xc2);  // THR empty; this read clears it
    CHECK(r.in(kIirFcr) == 0xc1);
    CHECK_FALSE(r.line.level);
    r.out(kRbrThr, 'x');  // THR empties again at once
    CHECK(r.in(kIirFcr) == 0xc2);
    CHECK(r.in(kIirFcr) == 0xc1);
}

TEST_CASE("Uart16550: modem status interrupt from loopback deltas, cleared by reading MSR") {
    Rig r;
    r.out(kIer, kIerMsi);
    r.out(kMcr, kMcrLoop);
    r.in(kMsr);  // entering loopback changed the lines: clear those deltas
    CHECK(r.in(kIirFcr) == 0x01);
    r.out(kMcr, kMcrLoop | kMcrRts | kMcrOut1);
    CHECK(r.in(kIirFcr) == 0x00);  // modem status
    uint8_t m = r.in(kMsr);
    CHECK((m & (kMsrCts | kMsrDcts)) == (kMsrCts | kMsrDcts));
    CHECK((m & kMsrRi) != 0);
    CHECK(r.in(kIirFcr) == 0x01);
    r.out(kMcr, kMcrLoop | kMcrRts);  // OUT1 -> RI falls: trailing edge sets TERI
    CHECK((r.in(kMsr)&kMsrTeri) != 0);
}

TEST_CASE("Uart16550: receive FIFO trigger level") {
    Rig r;
    r.out(kIirFcr, kFcrEnable | (2 << kFcrTriggerShift));  // 8 bytes
    r.out(kIer, kIerRda);
    for (int i = 0; i < 7; i++) r.u.receive(uint8_t('0' + i));
    CHECK(r.in(kIirFcr) == 0xc1);
    CHECK((r.in(kLsr)&kLsrDr) != 0);
    r.u.receive('7');
    CHECK(r.in(kIirFcr) == 0xc4);
    r.in(kRbrThr);
    CHECK(r.in(kIirFcr) == 0xc1);  // 7 left: below the trigger again
    CHECK(r.u.rx_space() == 16 - 7);
    for (int i = 0; i < 9; i++) CHECK(r.u.receive('z'));
    CHECK_FALSE(r.u.receive('!'));  // 17th byte: overrun
    CHECK((r.in(kLsr)&kLsrOe) != 0);
    CHECK((r.in(kLsr)&kLsrOe) == 0);  // cleared by the read
    std::string got;
    while (r.in(kLsr)&kLsrDr) got += char(r.in(kRbrThr));
    CHECK(got == "1234567zzzzzzzzz");
    CHECK(r.host.ready == 17);
}

TEST_CASE("Uart16550: character timeout after four character times") {
    Rig r;
    r.out(kLcr, kLcrDlab | 0x03);  // 8N1
    r.out(kDll, 1);                // 115200 baud: 10 bits * 16 / 1.8432 MHz = 86806 ns per char
    r.out(kDlm, 0);
    r.out(kLcr, 0x03);
    r.out(kIirFcr, kFcrEnable | (1 << kFcrTriggerShift));  // trigger 4
    r.out(kIer, kIerRda);
    r.u.receive('q');
    r.tick(4 * 86806 - 1000);
    CHECK(r.in(kIirFcr) == 0xc1);
    r.tick(2000);
    CHECK(r.in(kIirFcr) == 0xcc);
    CHECK(r.in(kRbrThr) == 'q');
    CHECK(r.in(kIirFcr) == 0xc1);
}

TEST_CASE("Uart16550: 16450 mode holds one character and overruns on the second") {
    Rig r;
    r.out(kIer, kIerRls | kIerRda);
    CHECK(r.u.receive('a'));
    CHECK(r.in(kIirFcr) == 0x04);  // no FIFO bits
    CHECK_FALSE(r.u.receive('b'));
    CHECK(r.in(kIirFcr) == 0x06);  // overrun -> line status, highest priority
    CHECK((r.in(kLsr) & (kLsrOe | kLsrDr)) == (kLsrOe | kLsrDr));
    CHECK(r.in(kRbrThr) == 'a');
    CHECK(r.in(kRbrThr) == 'a');  // RBR keeps the last character
}

TEST_CASE("Uart16550: the IRQ line follows INTR gated by OUT2 and is quiet in loopback") {
    Rig r;
    r.out(kIer, kIerThre);
    CHECK(r.in(kIirFcr) == 0x02);  // pending (and now cleared by this read)
    r.out(kIer, 0);
    r.out(kIer, kIerThre);  // re-enabling with THR empty raises it again
    CHECK_FALSE(r.line.level);
    r.out(kMcr, kMcrOut2);
    CHECK(r.line.level);
    r.out(kMcr, kMcrOut2 | kMcrLoop);
    CHECK_FALSE(r.line.level);
    r.out(kMcr, kMcrOut2);
    CHECK(r.line.level);
    r.in(kIirFcr);
    CHECK_FALSE(r.line.level);
}

TEST_CASE("Uart16550: loopback sends transmitted bytes to the receiver, not the host") {
    Rig r;
    r.out(kIirFcr, kFcrEnable);
    r.out(kMcr, kMcrLoop);
    r.out(kRbrThr, 'L');
    r.out(kRbrThr, 'B');
    CHECK(r.host.out.empty());
    CHECK_FALSE(r.u.receive('x'));  // external input is disconnected
    CHECK(r.in(kRbrThr) == 'L');
    CHECK(r.in(kRbrThr) == 'B');
    CHECK((r.in(kLsr)&kLsrDr) == 0);
    r.out(kMcr, 0);
    r.out(kRbrThr, '!');
    CHECK(r.host.out == "!");
}
