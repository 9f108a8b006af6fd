// Uart16550: register logic of the 16550A (PC16550D datasheet sections cited at the rules).
#include "devices/uart16550.h"

#include <algorithm>

namespace m86::dev {

using namespace uart;

Uart16550::Uart16550(Clock& clock, IrqLine irq, SerialBackend* backend)
    : clock_(clock), irq_(irq), backend_(backend), timeout_(clock, [this](uint64_t) {
          s_.timeout_pending = true;
          update_irq();
      }) {}

void Uart16550::restore(const State& s) {
    s_ = s;
    rearm_timeout();
    update_irq();
}

unsigned Uart16550::trigger_level() const {
    static constexpr unsigned kLevels[4] = {1, 4, 8, 14};  // FCR bits 7:6 (8.6.2)
    return kLevels[(s_.fcr >> kFcrTriggerShift) & 3];
}

unsigned Uart16550::rx_space() const {
    if (s_.mcr & kMcrLoop) return 0;
    return rx_capacity() - s_.rx_count;
}

// One character time in ns: start bit + data bits + parity + stop bits, each 16 clocks of the
// baud generator (input clock / divisor). Counted in half bits for the 1.5-stop-bit case.
uint64_t Uart16550::char_time_ns() const {
    unsigned data = 5 + (s_.lcr & kLcrWordMask);
    unsigned half_bits = 2 * (1 + data) + ((s_.lcr & kLcrParity) ? 2 : 0);
    half_bits += !(s_.lcr & kLcrStop) ? 2 : (data == 5 ? 3 : 4);
    uint64_t divisor = s_.divisor ? s_.divisor : 0x10000;
    return muldiv_ceil(uint64_t(half_bits) * 16 * divisor, kNsPerSec, 2 * kInputClockHz);
}

uint8_t Uart16550::lsr() const {
    uint8_t v = kLsrThre | kLsrTemt | s_.lsr_errors;  // transmission is instantaneous
    if (s_.rx_count) v |= kLsrDr;
    // LSR7: at least one character in the FIFO has a parity/framing error or break (8.6.3).
    if (fifo_enabled())
        for (unsigned i = 0; i < s_.rx_count; i++)
            if (s_.rx[(s_.rx_head + i) % kFifoSize] >> 8) v |= kLsrFifoErr;
    return v;
}

// The modem status lines: external inputs, or in loopback the MCR outputs wired back
// (8.6.5: RTS -> CTS, DTR -> DSR, OUT1 -> RI, OUT2 -> DCD).
uint8_t Uart16550::msr() const {
    uint8_t lines = s_.msr_lines;
    if (s_.mcr & kMcrLoop) {
        lines = 0;
        if (s_.mcr & kMcrRts) lines |= kMsrCts;
        if (s_.mcr & kMcrDtr) lines |= kMsrDsr;
        if (s_.mcr & kMcrOut1) lines |= kMsrRi;
        if (s_.mcr & kMcrOut2) lines |= kMsrDcd;
    }
    return lines | s_.msr_deltas;
}

// The highest-priority pending interrupt (8.6.3, Table IV): line status, then received data or
// character timeout, then THR empty, then modem status.
uint8_t Uart16550::iir() const {
    uint8_t fifo = fifo_enabled() ? kIirFifo : 0;
    if ((s_.ier & kIerRls) && (s_.lsr_errors & kLsrErrors)) return fifo | kIirRls;
    if (s_.ier & kIerRda) {
        if (s_.rx_count && s_.rx_count >= (fifo_enabled() ? trigger_level() : 1)) return fifo | kIirRda;
        if (s_.timeout_pending) return fifo | kIirTimeout;
    }
    if ((s_.ier & kIerThre) && s_.thre_pending) return fifo | kIirThre;
    if ((s_.ier & kIerMsi) && s_.msr_deltas) return fifo | kIirMsi;
    return fifo | kIirNone;
}

void Uart16550::update_irq() {
    bool pending = !(iir() & kIirNone);
    bool level = pending && (s_.mcr & kMcrOut2) && !(s_.mcr & kMcrLoop);
    if (level != irq_level_) {
        irq_level_ = level;
        irq_.set(level);
    }
}

void Uart16550::rearm_timeout() {
    // Character timeout (8.6.3): characters in the FIFO, none received or read for 4 char times.
    if (fifo_enabled() && s_.rx_count)
        timeout_.arm(clock_.now() + 4 * char_time_ns());
    else
        timeout_.cancel();
}

bool Uart16550::push_rx(uint16_t entry) {
    if (s_.rx_count == rx_capacity()) {
        s_.lsr_errors |= kLsrOe;  // overrun: the new character is lost (8.6.3, LSR1)
        update_irq();
        return false;
    }
    s_.rx[(s_.rx_head + s_.rx_count) % kFifoSize] = entry;
    if (s_.rx_count++ == 0) s_.lsr_errors |= uint8_t(entry >> 8);  // it is now at the top
    s_.timeout_pending = false;
    rearm_timeout();
    update_irq();
    return true;
}

uint8_t Uart16550::pop_rx() {
    if (!s_.rx_count) return s_.rbr;
    s_.rbr = uint8_t(s_.rx[s_.rx_head]);
    s_.rx_head = (s_.rx_head + 1) % kFifoSize;
    s_.rx_count--;
    if (s_.rx_count) s_.lsr_errors |= uint8_t(s_.rx[s_.rx_head] >> 8);
    s_.timeout_pending = false;
    rearm_timeout();
    update_irq();
    if (backend_ && !(s_.mcr & kMcrLoop)) backend_->rx_ready();
    return s_.rbr;
}

bool Uart16550::receive(uint8_t byte) {
    if (s_.mcr & kMcrLoop) return false;  // the receiver input is disconnected in loopback (8.6.5)
    return push_rx(byte);
}

void Uart16550::receive_break() {
    if (!(s_.mcr & kMcrLoop)) push_rx(uint16_t(kLsrBi) << 8);
}

void Uart16550::transmit(uint8_t byte) {
    if (s_.mcr & kMcrLoop)
        push_rx(byte);  // loopback: the transmitter output feeds the receiver
    else if (backend_)
        backend_->transmit(byte);
    s_.thre_pending = true;  // writing THR clears THRE; the byte leaves at once, so it is empty again
    update_irq();
}

void Uart16550::set_mcr(uint8_t v) {
    uint8_t before = msr() & ~kMsrDeltas;
    s_.mcr = v & kMcrMask;
    uint8_t after = msr() & ~kMsrDeltas;
    uint8_t changed = before ^ after;
    if (changed & kMsrCts) s_.msr_deltas |= kMsrDcts;
    if (changed & kMsrDsr) s_.msr_deltas |= kMsrDdsr;
    if (changed & kMsrDcd) s_.msr_deltas |= kMsrDdcd;
    if ((before & kMsrRi) && !(after & kMsrRi)) s_.msr_deltas |= kMsrTeri;  // trailing edge of RI
    rearm_timeout();
    update_irq();
}

uint8_t Uart16550::read8(unsigned offset) {
    bool dlab = s_.lcr & kLcrDlab;
    switch (offset) {
        case kRbrThr: return dlab ? uint8_t(s_.divisor) : pop_rx();
        case kIer: return dlab ? uint8_t(s_.divisor >> 8) : s_.ier;
        case kIirFcr: {
            uint8_t v = iir();
            // Reading IIR while it reports THR empty clears that interrupt (8.6.3, Table IV).
            if ((v & kIirIdMask) == kIirThre) {
                s_.thre_pending = false;
                update_irq();
            }
            return v;
        }
        case kLcr: return s_.lcr;
        case kMcr: return s_.mcr;
        case kLsr: {
            uint8_t v = lsr();
            s_.lsr_errors = 0;  // reading LSR clears OE, PE, FE and BI (8.6.3)
            update_irq();
            return v;
        }
        case kMsr: {
            uint8_t v = msr();
            s_.msr_deltas = 0;
            update_irq();
            return v;
        }
        case kScr: return s_.scr;
    }
    return 0xff;
}

void Uart16550::write8(unsigned offset, uint8_t value) {
    bool dlab = s_.lcr & kLcrDlab;
    switch (offset) {
        case kRbrThr:
            if (dlab)
                s_.divisor = uint16_t((s_.divisor & 0xff00) | value);
            else
                transmit(value);
            break;
        case kIer:
            if (dlab) {
                s_.divisor = uint16_t((s_.divisor & 0x00ff) | (value << 8));
            } else {
                // Enabling the THRE interrupt while THR is empty raises it at once (8.6.4).
                if ((value & kIerThre) && !(s_.ier & kIerThre)) s_.thre_pending = true;
                s_.ier = value & kIerMask;
                update_irq();
            }
            break;
        case kIirFcr: {
            bool was = fifo_enabled();
            // FCR0 must be set for the other bits to be written (8.6.2); changing FCR0 clears the FIFOs.
            s_.fcr = (value & kFcrEnable) ? uint8_t(value & (kFcrEnable | kFcrDmaMode | kFcrTriggerMask)) : 0;
            if (was != fifo_enabled() || (value & kFcrClearRx)) {
                s_.rx_count = 0;
                s_.rx_head = 0;
                s_.timeout_pending = false;
            }
            rearm_timeout();
            update_irq();
            break;
        }
        case kLcr: s_.lcr = value; break;
        case kMcr: set_mcr(value); break;
        case kLsr: break;  // factory test only
        case kMsr: break;
        case kScr: s_.scr = value; break;
    }
}

}  // namespace m86::dev
