// Uart16550: the 16550A UART (National Semiconductor PC16550D datasheet, which the section numbers
// below cite; the 16550A behaves the same), 8 registers at offsets 0..7 (COM1: port 0x3f8, IRQ 4).
//
// Guest side: RBR/THR, IER, IIR/FCR, LCR, MCR, LSR, MSR, SCR and the divisor latch (LCR.DLAB),
// 16-byte FIFOs with receive trigger levels 1/4/8/14, the four interrupt sources with the IIR
// priority scheme (line status > received data / character timeout > THR empty > modem status),
// the THRE interrupt that clears on reading IIR, loopback mode (MCR bit 4) with the modem lines
// looped back, and the character timeout (4 character times, from the divisor and LCR).
//
// Host side: bytes the guest transmits go to SerialBackend::transmit() at once (no baud-rate
// pacing, so THR is empty again immediately, as in QEMU). Input is pushed by the board with
// receive(): rx_space() says how many bytes fit without overrunning the FIFO; the backend's
// rx_ready() is called when the guest has read a byte and more input fits.
//
// Interrupt output: the IRQ line carries INTR gated by MCR.OUT2, as PC serial ports wire it (the
// PC/AT serial adapter ANDs INTR with OUT2; in loopback mode the OUT2 pin is forced inactive,
// 8.6.5, so the line is quiet). The modem inputs CTS, DSR and DCD read as asserted (a host that is
// always connected), RI as deasserted.
#pragma once

#include <array>
#include <cstdint>

#include "devices/clock.h"
#include "devices/device.h"

namespace m86::dev {

class SerialBackend {
   public:
    virtual ~SerialBackend() = default;
    virtual void transmit(uint8_t byte) = 0;  // a byte the guest sent
    virtual void rx_ready() {}                // the guest made room in the receive FIFO
};

namespace uart {
// Register offsets (8.6, Table II). DLAB = LCR bit 7 switches offsets 0/1 to the divisor latch.
constexpr unsigned kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
constexpr unsigned kDll = 0, kDlm = 1;
constexpr unsigned kRegCount = 8;
// IER (8.6.4): only bits 0..3 exist.
constexpr uint8_t kIerRda = 0x01, kIerThre = 0x02, kIerRls = 0x04, kIerMsi = 0x08, kIerMask = 0x0f;
// IIR (8.6.3, Table IV): bit 0 = no interrupt pending, bits 1..3 = source, bits 6..7 = FIFOs on.
constexpr uint8_t kIirNone = 0x01, kIirMsi = 0x00, kIirThre = 0x02, kIirRda = 0x04, kIirRls = 0x06,
                  kIirTimeout = 0x0c, kIirFifo = 0xc0, kIirIdMask = 0x0f;
// FCR (8.6.2).
constexpr uint8_t kFcrEnable = 0x01, kFcrClearRx = 0x02, kFcrClearTx = 0x04, kFcrDmaMode = 0x08,
                  kFcrTriggerMask = 0xc0, kFcrTriggerShift = 6;
// LCR (8.6.1).
constexpr uint8_t kLcrWordMask = 0x03, kLcrStop = 0x04, kLcrParity = 0x08, kLcrBreak = 0x40, kLcrDlab = 0x80;
// MCR (8.6.5): bits 5..7 read as 0.
constexpr uint8_t kMcrDtr = 0x01, kMcrRts = 0x02, kMcrOut1 = 0x04, kMcrOut2 = 0x08, kMcrLoop = 0x10,
                  kMcrMask = 0x1f;
// LSR (8.6.3).
constexpr uint8_t kLsrDr = 0x01, kLsrOe = 0x02, kLsrPe = 0x04, kLsrFe = 0x08, kLsrBi = 0x10, kLsrThre = 0x20,
                  kLsrTemt = 0x40, kLsrFifoErr = 0x80, kLsrErrors = kLsrOe | kLsrPe | kLsrFe | kLsrBi;
// MSR (8.6.8): deltas in bits 0..3, line states in bits 4..7.
constexpr uint8_t kMsrDcts = 0x01, kMsrDdsr = 0x02, kMsrTeri = 0x04, kMsrDdcd = 0x08, kMsrCts = 0x10,
                  kMsrDsr = 0x20, kMsrRi = 0x40, kMsrDcd = 0x80, kMsrDeltas = 0x0f;
constexpr unsigned kFifoSize = 16;
constexpr uint64_t kInputClockHz = 1'843'200;  // the PC's UART crystal: divisor 1 = 115200 baud
}  // namespace uart

class Uart16550 : public ByteDevice {
   public:
    struct State {
        uint8_t ier = 0, lcr = 0, mcr = 0, scr = 0, fcr = 0;
        uint16_t divisor = 12;   // 9600 baud: the power-on divisor is undefined; this is what BIOSes set
        uint8_t rbr = 0;         // the last character read (RBR keeps it when the FIFO is empty)
        uint8_t lsr_errors = 0;  // OE/PE/FE/BI latched until LSR is read
        uint8_t msr_deltas = 0;
        uint8_t msr_lines = uart::kMsrCts | uart::kMsrDsr | uart::kMsrDcd;  // external modem inputs
        bool thre_pending = false;  // THR-empty interrupt condition (cleared by IIR read / THR write)
        bool timeout_pending = false;
        // Receive FIFO entries: data byte | (PE/FE/BI flags << 8).
        std::array<uint16_t, uart::kFifoSize> rx{};
        unsigned rx_head = 0, rx_count = 0;
    };

    Uart16550(Clock& clock, IrqLine irq, SerialBackend* backend = nullptr);

    uint8_t read8(unsigned offset) override;
    void write8(unsigned offset, uint8_t value) override;

    // Host side.
    unsigned rx_space() const;
    // Delivers one received character. Returns false on overrun (the FIFO was full: the byte is
    // lost and LSR.OE is set), as the chip does. In loopback mode external input is ignored.
    bool receive(uint8_t byte);
    void receive_break();  // a break condition: a 0 character with LSR.BI
    void set_backend(SerialBackend* backend) { backend_ = backend; }

    const State& state() const { return s_; }
    void restore(const State& s);
    bool irq_level() const { return irq_level_; }

   private:
    bool fifo_enabled() const { return s_.fcr & uart::kFcrEnable; }
    unsigned rx_capacity() const { return fifo_enabled() ? uart::kFifoSize : 1; }
    unsigned trigger_level() const;
    uint8_t lsr() const;
    uint8_t msr() const;
    uint8_t iir() const;
    uint64_t char_time_ns() const;
    bool push_rx(uint16_t entry);
    uint8_t pop_rx();
    void transmit(uint8_t byte);
    void set_mcr(uint8_t v);
    void rearm_timeout();
    void update_irq();

    State s_;
    Clock& clock_;
    IrqLine irq_;
    SerialBackend* backend_;
    Timer timeout_;
    bool irq_level_ = false;
};

}  // namespace m86::dev
