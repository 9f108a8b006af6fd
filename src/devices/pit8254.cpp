// Pit8254: counters as functions of virtual time. A channel that counts is described by the tick
// its current stretch started (run_start) and the ticks it had counted before (d_base); the
// elapsed count d, the counter value and OUT follow from the mode's rules (datasheet "Mode
// Definitions"). Events are scheduled only at channel 0's OUT transitions.
#include "devices/pit8254.h"

namespace m86::dev {

using namespace pit;

namespace {
// The first virtual time (ns) at which the tick count reaches k.
uint64_t ns_of_tick(uint64_t k) { return muldiv_ceil(k, kNsPerSec, kHz); }

uint32_t decode(uint16_t v, bool bcd) {
    if (!bcd) return v ? v : 0x10000;
    uint32_t x = ((v >> 12) & 0xf) * 1000 + ((v >> 8) & 0xf) * 100 + ((v >> 4) & 0xf) * 10 + (v & 0xf);
    return x ? x : 10000;
}

uint16_t encode(uint64_t v, bool bcd) {
    if (!bcd) return uint16_t(v);
    v %= 10000;
    return uint16_t((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | (v % 10));
}

// Past this lateness an overdue IRQ0 event stops replaying every transition and skips ahead.
constexpr uint64_t kMaxCatchUpNs = 1'000'000;
}  // namespace

Pit8254::Pit8254(Clock& clock, IrqLine irq0)
    : clock_(clock), irq0_(irq0), timer_(clock, [this](uint64_t deadline) { on_timer(deadline); }) {
    port61_.pit = this;
    // Reset state as QEMU leaves it (and a PC BIOS programs it): every channel in mode 3 with
    // count 0 (65536), so IRQ0 runs at 18.2 Hz until the guest reprograms channel 0; gate 2 low.
    for (unsigned i = 0; i < kChannels; i++) {
        Channel& c = s_.ch[i];
        c.control = uint8_t(kRwWord << kRwShift | 3 << kModeShift);
        c.mode = 3;
        c.n = 0x10000;
        c.loaded = true;
        c.gate = i != 2;
        if (c.gate) start(c, 0, 0);
    }
    irq0_level_ = !out_at(s_.ch[0], 0);
    update_irq0(tick_now());
}

void Pit8254::restore(const State& s) {
    s_ = s;
    irq0_level_ = !out_at(s_.ch[0], tick_now());
    update_irq0(tick_now());
}

uint64_t Pit8254::tick_now() const { return muldiv(clock_.now(), kHz, kNsPerSec); }

uint64_t Pit8254::d_at(const Channel& c, uint64_t tick) const {
    return c.d_base + (c.running && tick > c.run_start ? tick - c.run_start : 0);
}

// Modes 2 and 3 load a count written during counting at the end of the current cycle (mode 2) or
// half-cycle (mode 3); apply such a reload once its time has come.
void Pit8254::normalize(Channel& c, uint64_t tick) {
    if (c.reload_pending && c.running && d_at(c, tick) >= c.reload_at_d) {
        c.run_start += c.reload_at_d - c.d_base;
        c.d_base = c.reload_d_base;
        c.n = c.reload_n;
        c.reload_pending = false;
    }
}

bool Pit8254::out_at(const Channel& c, uint64_t tick) const {
    if (!c.loaded) return c.mode != 0;  // after the control word: mode 0 low, all others high
    uint64_t d = d_at(c, tick), n = c.n;
    switch (c.mode) {
        case 0: return d >= n;                          // interrupt on terminal count
        case 1: return !c.triggered || d >= n;          // one-shot: low for n ticks after the trigger
        case 2: return !c.gate || d % n != n - 1;       // rate generator: low for one tick at count 1
        case 3: return !c.gate || d % n < (n + 1) / 2;  // square wave: high ceil(n/2), low floor(n/2)
        case 4: return d != n;                          // software strobe: low for one tick at count 0
        default: return !c.triggered || d != n;         // mode 5: hardware strobe
    }
}

// The tick of OUT's next transition after `tick`, or kNever.
uint64_t Pit8254::next_change(const Channel& c, uint64_t tick) const {
    if (!c.loaded || !c.running) return kNever;
    uint64_t d = d_at(c, tick), n = c.n, dn;
    switch (c.mode) {
        case 0:
        case 1:
            if (d >= n) return kNever;
            dn = n;
            break;
        case 2: {
            if (n < 2) return kNever;
            uint64_t r = d % n;
            dn = r < n - 1 ? d + (n - 1 - r) : d + 1;
            break;
        }
        case 3: {
            if (n < 2) return kNever;
            uint64_t r = d % n, h = (n + 1) / 2;
            dn = r < h ? d + (h - r) : d + (n - r);
            break;
        }
        default:
            if (d > n) return kNever;
            dn = d < n ? n : n + 1;
            break;
    }
    return c.run_start + (dn - c.d_base);
}

uint16_t Pit8254::count_at(const Channel& c, uint64_t tick) const {
    if (!c.loaded || ((c.mode == 1 || c.mode == 5) && !c.triggered)) return c.count_reg;
    uint64_t d = d_at(c, tick), n = c.n, v;
    uint64_t mod = c.bcd ? 10000 : 0x10000;
    switch (c.mode) {
        case 2: v = n - d % n; break;
        case 3: v = (n - (2 * d) % n) & ~1ull; break;   // counts down by two each tick
        default: v = (n + mod - d % mod) % mod; break;  // modes 0, 1, 4, 5 wrap and keep counting
    }
    return encode(v, c.bcd);
}

void Pit8254::start(Channel& c, uint64_t tick, uint64_t d0) {
    c.running = true;
    c.run_start = tick;
    c.d_base = d0;
}

void Pit8254::write_count(Channel& c, uint16_t value, uint64_t tick) {
    uint32_t n = decode(value, c.bcd);
    c.count_reg = value;
    c.null_count = true;
    c.null_until = tick;  // loaded into the counting element at once (see the header)
    switch (c.mode) {
        case 0:
        case 4:  // (re)start counting; a low gate holds it at the start
            c.n = n;
            c.loaded = true;
            c.d_base = 0;
            c.run_start = tick;
            c.running = c.gate;
            break;
        case 1:
        case 5:  // armed: the count is used at the next gate trigger
            c.n_next = n;
            if (!c.loaded) c.n = n;
            c.loaded = true;
            if (!c.triggered) c.null_until = kNever;
            break;
        default:  // modes 2 and 3
            if (!c.loaded || !c.running) {
                c.n = n;
                c.loaded = true;
                c.reload_pending = false;
                c.d_base = 0;
                if (c.gate) start(c, tick, 0);
                break;
            }
            uint64_t d = d_at(c, tick), r = d % c.n;
            if (c.mode == 3 && r < (c.n + 1) / 2) {
                c.reload_at_d = d - r + (c.n + 1) / 2;  // end of the high half: continue low
                c.reload_d_base = (n + 1) / 2;
            } else {
                c.reload_at_d = d - r + c.n;
                c.reload_d_base = 0;
            }
            c.reload_pending = true;
            c.reload_n = n;
            c.null_until = c.run_start + (c.reload_at_d - c.d_base) - 1;
            break;
    }
}

void Pit8254::latch_count(Channel& c, uint64_t tick) {
    if (c.latch_bytes) return;  // a second latch before the read is ignored ("Counter Latch Command")
    c.latched = count_at(c, tick);
    c.latch_bytes = c.rw == kRwWord ? 2 : 1;
}

void Pit8254::latch_status(Channel& c, uint64_t tick) {
    if (c.status_latched) return;
    bool null = c.null_count && tick <= c.null_until;
    c.status = uint8_t((out_at(c, tick) ? kStatusOut : 0) | (null ? kStatusNull : 0) | c.control);
    c.status_latched = true;
}

void Pit8254::control(uint8_t v, uint64_t tick) {
    unsigned sc = v >> kScShift;
    if (sc == kScReadBack) {
        for (unsigned i = 0; i < kChannels; i++) {
            if (!(v & (2u << i))) continue;
            normalize(s_.ch[i], tick);
            // Status first: a read after latching both returns the status, then the count.
            if (!(v & kRbNoStatus)) latch_status(s_.ch[i], tick);
            if (!(v & kRbNoCount)) latch_count(s_.ch[i], tick);
        }
        return;
    }
    Channel& c = s_.ch[sc];
    normalize(c, tick);
    unsigned rw = (v >> kRwShift) & 3;
    if (rw == kRwLatch) return latch_count(c, tick);
    // A control word resets the channel: OUT to its initial state, counting stops until a count
    // is written ("Write Operations").
    c.control = v & kControlStatusMask;
    c.rw = uint8_t(rw);
    c.mode = (v >> kModeShift) & 7;
    if (c.mode > 5) c.mode -= 4;
    c.bcd = v & kBcd;
    c.loaded = c.running = c.triggered = c.reload_pending = false;
    c.d_base = 0;
    c.null_count = true;
    c.null_until = kNever;
    c.write_msb_next = c.read_msb_next = false;
}

uint8_t Pit8254::read_channel(Channel& c, uint64_t tick) {
    normalize(c, tick);
    if (c.status_latched) {
        c.status_latched = false;
        return c.status;
    }
    uint16_t v = c.latch_bytes ? c.latched : count_at(c, tick);
    if (c.latch_bytes) c.latch_bytes--;
    switch (c.rw) {
        case kRwLsb: return uint8_t(v);
        case kRwMsb: return uint8_t(v >> 8);
        default: {
            bool msb = c.read_msb_next;
            c.read_msb_next = !msb;  // the read flip-flop: LSB, then MSB
            return msb ? uint8_t(v >> 8) : uint8_t(v);
        }
    }
}

uint8_t Pit8254::read8(unsigned offset) {
    if (offset >= kChannels) return 0xff;  // the control word register cannot be read
    return read_channel(s_.ch[offset], tick_now());
}

void Pit8254::write8(unsigned offset, uint8_t v) {
    uint64_t tick = tick_now();
    if (offset == kControl) {
        control(v, tick);
    } else if (offset < kChannels) {
        Channel& c = s_.ch[offset];
        normalize(c, tick);
        switch (c.rw) {
            case kRwLsb: write_count(c, v, tick); break;
            case kRwMsb: write_count(c, uint16_t(v << 8), tick); break;
            default:
                if (!c.write_msb_next) {
                    c.write_lsb = v;
                    c.write_msb_next = true;
                    // Mode 0: writing the first byte stops counting and sets OUT low ("Mode 0").
                    if (c.mode == 0) c.loaded = c.running = false;
                } else {
                    c.write_msb_next = false;
                    write_count(c, uint16_t(c.write_lsb | v << 8), tick);
                }
                break;
        }
    }
    update_irq0(tick);
}

bool Pit8254::out(unsigned ch) {
    uint64_t tick = tick_now();
    normalize(s_.ch[ch], tick);
    return out_at(s_.ch[ch], tick);
}

// Gate input ("Gate" table in "Mode Definitions"): modes 0/4 pause while low; modes 1/5 trigger on
// a rising edge; modes 2/3 stop with OUT high while low and restart from the count on a rising edge.
void Pit8254::set_gate(unsigned ch, bool level) {
    uint64_t tick = tick_now();
    Channel& c = s_.ch[ch];
    normalize(c, tick);
    if (c.gate == level) return;
    c.gate = level;
    switch (c.mode) {
        case 0:
        case 4:
            if (!c.loaded) break;
            if (!level) {
                c.d_base = d_at(c, tick);
                c.running = false;
            } else {
                c.run_start = tick;
                c.running = true;
            }
            break;
        case 1:
        case 5:
            if (level && c.loaded) {
                c.n = c.n_next;
                c.triggered = true;
                c.null_until = tick;
                start(c, tick, 0);
            }
            break;
        default:
            if (!c.loaded) break;
            if (!level) {
                c.d_base = d_at(c, tick);
                c.running = false;
            } else {
                if (c.reload_pending) c.n = c.reload_n, c.reload_pending = false;
                start(c, tick, 0);
            }
            break;
    }
    if (ch == 0) update_irq0(tick);
}

uint8_t Pit8254::read61() {
    uint64_t tick = tick_now();
    uint8_t v = s_.port61 & kP61Writable;
    if ((tick / kRefreshTicks) & 1) v |= kP61Refresh;
    if (out(2)) v |= kP61Out2;
    return v;
}

void Pit8254::write61(uint8_t v) {
    s_.port61 = v & kP61Writable;
    set_gate(2, v & kP61Gate2);
}

void Pit8254::update_irq0(uint64_t tick) {
    Channel& c = s_.ch[0];
    normalize(c, tick);
    bool level = out_at(c, tick);
    if (level != irq0_level_) {
        irq0_level_ = level;
        irq0_.set(level);
    }
    uint64_t next = next_change(c, tick);
    if (next == kNever)
        timer_.cancel();
    else
        timer_.arm(ns_of_tick(next));
}

void Pit8254::on_timer(uint64_t deadline) {
    // Replay the transition at its own tick so every edge reaches the interrupt controller, unless
    // the board is so late that replaying would only burn time.
    uint64_t tick = muldiv(deadline, kHz, kNsPerSec);
    if (clock_.now() > deadline + kMaxCatchUpNs) tick = tick_now();
    update_irq0(tick);
}

}  // namespace m86::dev
