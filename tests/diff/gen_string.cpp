// Differential-test forms: the string instructions (MOVS CMPS SCAS LODS STOS) and small misc
// instructions (PAUSE, UD0/UD1/UD2). CPUID and RDTSC* cannot be compared with the host.
//
// One form per instruction x element width x prefix (none, F3, F2) x address size (64, 32 via 67h).
// Each case picks the direction (DF in the input RFLAGS; the native wrapper loads it with POPFQ and
// clears it afterwards), a count (mostly 0..40, some up to the whole data area), index registers in
// the data area (sometimes overlapping source and destination, some runs walking forward into the
// guard page so the host's #PF part-way pins down RCX/RSI/RDI), and shapes the data so REPE/REPNE
// run for a while before they stop. With 67h the upper halves of RSI/RDI/RCX are random: only
// ESI/EDI/ECX may be used, and 32-bit writes must zero-extend them.
//
// Flags (SDM Vol. 2): CMPS and SCAS set all six status flags as CMP; MOVS LODS STOS PAUSE none. So
// no form has undefined flags.
#include <algorithm>
#include <cstring>

#include "diff/harness.h"

namespace m86::difftest {

namespace {

enum class Op { Movs, Cmps, Scas, Lods, Stos };
enum class Rep { None, F3, F2 };

struct OpInfo {
    Op op;
    const char* name;
    uint8_t opcode;  // byte form; the wider forms are opcode + 1
    bool src, dst;   // uses [rSI] / [rDI]
};
constexpr OpInfo kOps[] = {
    {Op::Movs, "movs", 0xa4, true, true},  {Op::Cmps, "cmps", 0xa6, true, true},
    {Op::Scas, "scas", 0xae, false, true}, {Op::Lods, "lods", 0xac, true, false},
    {Op::Stos, "stos", 0xaa, false, true},
};

constexpr uint64_t kEnd = kDataAddr + kDataSize;  // == kGuardAddr

// Element count for a case: mostly small, sometimes large.
uint64_t pick_count(Picker& p, unsigned w) {
    unsigned r = unsigned(p.rng() % 100);
    if (r < 45) return p.rng() % 9;
    if (r < 80) return 9 + p.rng() % 32;
    if (r < 92) return 41 + p.rng() % 300;
    return 1 + p.rng() % (kDataSize / w);
}

// Start address for a pointer walking n elements of w bytes in direction `down` that stays inside
// the data area; or, when `fault`, walks forward into the guard page after some elements.
uint64_t place(Picker& p, unsigned w, uint64_t n, bool down, bool fault) {
    uint64_t span = std::max<uint64_t>(n, 1) * w;
    if (fault && !down) {
        // First element in the guard page at index k < n (or an element straddling into it).
        uint64_t k = p.rng() % std::max<uint64_t>(n, 1);
        uint64_t mis = p.rng() % 3 == 0 ? p.rng() % w : 0;
        return kEnd - k * w - mis;
    }
    if (fault && down) return kEnd + p.rng() % 64;  // starts in the guard page
    if (span > kDataSize) span = kDataSize;
    uint64_t room = kDataSize - span;
    uint64_t off = p.rng() % (room + 1);
    if (p.rng() % 2) off &= ~uint64_t(w - 1);  // aligned half the time
    // Down: the first element is the highest one.
    return down ? kDataAddr + off + span - w : kDataAddr + off;
}

// Is [a, a + w) inside the data area?
bool inside(uint64_t a, unsigned w) { return a >= kDataAddr && a + w <= kEnd; }

void put_elem(State& st, uint64_t a, unsigned w, uint64_t v) {
    if (inside(a, w)) std::memcpy(st.data + (a - kDataAddr), &v, w);
}
uint64_t get_elem(const State& st, uint64_t a, unsigned w) {
    uint64_t v = 0;
    if (inside(a, w)) std::memcpy(&v, st.data + (a - kDataAddr), w);
    return v;
}

void add_string_form(std::vector<Form>& v, const OpInfo& oi, unsigned w, Rep rep, bool a32) {
    static const char* kSuffix[] = {"", "b", "w", "", "d", "", "", "", "q"};
    Form f;
    const char* rep_name = "";
    bool cmp = oi.op == Op::Cmps || oi.op == Op::Scas;
    if (rep == Rep::F3) rep_name = cmp ? "repe " : "rep ";
    if (rep == Rep::F2) rep_name = cmp ? "repne " : "rep(f2) ";
    f.name = std::string("string ") + rep_name + oi.name + kSuffix[w] + (a32 ? " a32" : " a64");
    f.cases = 300;
    f.emit = [oi, w, rep, a32, cmp](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        bool down = p.rng() % 2;
        if (down) st.rflags |= cpu::fl::DF;
        uint64_t n = pick_count(p, w);
        uint64_t walk = rep == Rep::None ? 1 : n;  // elements the instruction may touch
        bool fault = p.rng() % 100 < 8;
        // Which pointer faults (if any): the source or the destination.
        bool fault_src = fault && oi.src && (!oi.dst || p.rng() % 2);
        bool fault_dst = fault && oi.dst && !fault_src;
        uint64_t si = place(p, w, walk, down, fault_src);
        uint64_t di = place(p, w, walk, down, fault_dst);
        if (oi.src && oi.dst && !fault && p.rng() % 3 == 0) {
            // Overlapping source and destination, a few elements apart either way.
            int64_t delta = int64_t(p.rng() % (6 * w + 1)) - int64_t(3 * w);
            uint64_t cand = si + delta;
            uint64_t lo = down ? cand - (walk - 1) * w : cand, hi = down ? cand + w : cand + walk * w;
            if (walk >= 1 && lo >= kDataAddr && hi <= kEnd) di = cand;
        }
        // Shape the data for the compare forms so REPE/REPNE run before stopping.
        if (cmp && rep != Rep::None && n > 0) {
            uint64_t m = p.rng() % (n + 1);  // index of the element where the repeat should stop
            int64_t step = down ? -int64_t(w) : int64_t(w);
            uint64_t acc = st.gpr[cpu::RAX];
            for (uint64_t k = 0; k < std::min<uint64_t>(m, n); k++) {
                uint64_t da = di + k * step;
                if (rep == Rep::F3)  // REPE: equal until m
                    put_elem(st, da, w, oi.op == Op::Cmps ? get_elem(st, si + k * step, w) : acc);
                else if (oi.op == Op::Scas &&
                         get_elem(st, da, w) == (acc & ((w == 8) ? ~0ull : (1ull << (8 * w)) - 1)))
                    put_elem(st, da, w, ~acc);  // REPNE: different until m
            }
            if (m < n && rep == Rep::F2) {  // REPNE: equal at m
                uint64_t da = di + m * step;
                put_elem(st, da, w, oi.op == Op::Cmps ? get_elem(st, si + m * step, w) : acc);
            }
        }
        uint64_t hi32 = a32 ? (p.u64() << 32) : 0;
        if (oi.src) st.gpr[cpu::RSI] = hi32 | si;
        if (oi.dst) st.gpr[cpu::RDI] = (a32 ? (p.u64() << 32) : 0) | di;
        if (rep != Rep::None) st.gpr[cpu::RCX] = (a32 ? (p.u64() << 32) : 0) | n;

        // Prefixes: 66h / 67h / F2-F3 / an ignored segment override, in random order; REX.W last.
        std::vector<uint8_t> pre;
        if (w == 2 || (w == 8 && p.rng() % 4 == 0)) pre.push_back(0x66);  // REX.W overrides 66h
        if (a32) pre.push_back(0x67);
        if (rep == Rep::F3) pre.push_back(0xf3);
        if (rep == Rep::F2) pre.push_back(0xf2);
        if (p.rng() % 4 == 0)
            pre.push_back(uint8_t(0x26 + 8 * (p.rng() % 4)));  // ES CS SS DS: no effect in 64-bit mode
        std::shuffle(pre.begin(), pre.end(), p.rng);
        for (uint8_t b : pre) g.db(b);
        if (w == 8) g.db(0x48);
        g.db(w == 1 ? oi.opcode : uint8_t(oi.opcode + 1));
    };
    v.push_back(std::move(f));
}

// A single instruction given by its bytes.
void add_bytes_form(std::vector<Form>& v, const char* name, std::vector<uint8_t> bytes, int cases = 50) {
    Form f;
    f.name = name;
    f.cases = cases;
    f.emit = [bytes](Xbyak::CodeGenerator& g, Picker& p, State& st) {
        // Memory operands of UD0/UD1 point into the data area (never accessed: still #UD).
        st.gpr[cpu::RAX] = kDataAddr + p.data_offset(4);
        for (uint8_t b : bytes) g.db(b);
    };
    v.push_back(std::move(f));
}

}  // namespace

void forms_string(std::vector<Form>& v) {
    for (const OpInfo& oi : kOps)
        for (unsigned w : {1u, 2u, 4u, 8u})
            for (Rep rep : {Rep::None, Rep::F3, Rep::F2})
                for (bool a32 : {false, true}) add_string_form(v, oi, w, rep, a32);

    add_bytes_form(v, "string lock movsb (#UD)", {0xf0, 0xa4});
    add_bytes_form(v, "string lock rep stosd (#UD)", {0xf0, 0xf3, 0xab});
    add_bytes_form(v, "misc pause", {0xf3, 0x90});
    add_bytes_form(v, "misc ud2", {0x0f, 0x0b});
    add_bytes_form(v, "misc ud0 eax, [rax]", {0x0f, 0xff, 0x00});
    add_bytes_form(v, "misc ud1 eax, [rax]", {0x0f, 0xb9, 0x00});
}

}  // namespace m86::difftest
