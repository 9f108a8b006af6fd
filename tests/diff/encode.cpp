// Hand encoder for differential-test instances; see encode.h.
#include "diff/encode.h"

namespace m86::difftest::enc {

namespace {
bool contains(std::initializer_list<int> l, int v) {
    for (int x : l)
        if (x == v) return true;
    return false;
}
}  // namespace

bool emit(Xbyak::CodeGenerator& g, const Insn& in) {
    std::vector<uint8_t> out(in.prefixes);
    if (in.has_modrm && in.rm.mem && in.rm.m.a32) out.push_back(0x67);
    // REX
    int r = in.reg, b = 0, x = 0;
    bool need_rex = in.rex_w, no_rex = false;
    auto byte_reg = [&](int n) {
        if (!in.byte_regs) return;
        if (n >= 16) no_rex = true;
        else if (n >= 4 && n <= 7) need_rex = true;
    };
    if (in.has_modrm) {
        if (!in.reg_is_opext) byte_reg(in.reg);
        if (in.rm.mem) {
            if (in.rm.m.base >= 0) b = in.rm.m.base;
            if (in.rm.m.index >= 0) x = in.rm.m.index;
        } else {
            b = in.rm.reg;
            byte_reg(in.rm.reg);
        }
    }
    if (!in.has_modrm) r = 0;
    if (in.opreg >= 0) {
        b = in.opreg;
        byte_reg(in.opreg);
    }
    if (in.reg_is_opext) r &= 7;
    if (r >= 16) r -= 12;  // AH..BH encode as 4..7
    if (b >= 16) b -= 12;
    uint8_t rex = uint8_t(0x40 | (in.rex_w ? 8 : 0) | ((r >> 3) & 1) << 2 | ((x >> 3) & 1) << 1 | ((b >> 3) & 1));
    if (rex != 0x40) need_rex = true;
    if (need_rex && no_rex) return false;
    if (need_rex) out.push_back(rex);
    for (uint8_t o : in.opcode) out.push_back(o);
    if (in.opreg >= 0) out.back() = uint8_t(out.back() | (b & 7));
    size_t disp_at = 0;
    int disp_size = 0;
    if (in.has_modrm) {
        int reg = r & 7;
        if (!in.rm.mem) {
            out.push_back(uint8_t(0xc0 | reg << 3 | (b & 7)));
        } else {
            const Mem& m = in.rm.m;
            if (m.rip) {
                out.push_back(uint8_t(reg << 3 | 5));
                disp_size = 4;
            } else if (m.base < 0) {  // [index*scale + disp32] or [disp32] via SIB
                out.push_back(uint8_t(reg << 3 | 4));
                int ss = m.scale == 8 ? 3 : m.scale == 4 ? 2 : m.scale == 2 ? 1 : 0;
                out.push_back(uint8_t(ss << 6 | (m.index >= 0 ? (x & 7) : 4) << 3 | 5));
                disp_size = 4;
            } else {
                disp_size = m.disp_size;
                if (disp_size == 0 && (b & 7) == 5) disp_size = 1;
                int mod = disp_size == 0 ? 0 : disp_size == 1 ? 1 : 2;
                bool sib = m.index >= 0 || (b & 7) == 4;
                out.push_back(uint8_t(mod << 6 | reg << 3 | (sib ? 4 : (b & 7))));
                if (sib) {
                    int ss = m.scale == 8 ? 3 : m.scale == 4 ? 2 : m.scale == 2 ? 1 : 0;
                    out.push_back(uint8_t(ss << 6 | (m.index >= 0 ? (x & 7) : 4) << 3 | (b & 7)));
                }
            }
            disp_at = out.size();
            for (int i = 0; i < disp_size; ++i) out.push_back(uint8_t(uint64_t(m.disp) >> (8 * i)));
        }
    }
    for (int i = 0; i < in.imm_size; ++i) out.push_back(uint8_t(in.imm >> (8 * i)));
    if (in.has_modrm && in.rm.mem && in.rm.m.rip) {
        // RIP-relative: the displacement counts from the end of the instruction (at kCodeAddr + size
        // of what g already holds + this instruction).
        uint64_t end = kCodeAddr + g.getSize() + out.size();
        uint32_t d = uint32_t(in.rm.m.target - end);
        for (int i = 0; i < 4; ++i) out[disp_at + i] = uint8_t(d >> (8 * i));
    }
    for (uint8_t v : out) g.db(v);
    return true;
}

int random_reg(Picker& p, unsigned width, bool allow_high, std::initializer_list<int> avoid) {
    for (;;) {
        int n;
        if (width == 1 && allow_high && p.rng() % 6 == 0) n = 16 + int(p.rng() % 4);
        else if (p.rng() % 40 == 0) n = 4;  // RSP/SPL now and then (the wrapper does not need it)
        else n = p.gpr();
        if (!contains(avoid, n)) return n;
    }
}

namespace {
int pick_scale(Picker& p) { return 1 << (p.rng() % 4); }
int64_t pick_disp(Picker& p, int& size) {
    switch (p.rng() % 4) {
        case 0: size = 0; return 0;
        case 1: size = 1; return int8_t(p.rng());
        case 2: size = 4; return int32_t(p.rng());
        default: size = 4; return int32_t(p.rng() % 0x2000) - 0x1000;
    }
}
int pick_base(Picker& p, std::initializer_list<int> avoid) {
    for (;;) {
        int n = p.rng() % 12 == 0 ? 4 : p.gpr();  // RSP sometimes (it needs a SIB byte)
        if (!contains(avoid, n)) return n;
    }
}
}  // namespace

Mem random_mem(Picker& p, State& st, unsigned size, std::initializer_list<int> avoid, int a32) {
    Mem m;
    m.a32 = a32 < 0 ? p.rng() % 4 == 0 : a32 == 1;
    uint64_t target = kDataAddr + p.data_offset(size);
    m.target = target;
    const uint64_t amask = m.a32 ? 0xffffffffull : ~0ull;
    switch (p.rng() % 10) {
        case 0:  // RIP-relative
            m.rip = true;
            return m;
        case 1:  // absolute [disp32] (no base; the address is below 2 GiB so it sign-extends right)
            m.disp = int64_t(target);
            m.disp_size = 4;
            if (p.rng() % 2) {  // with an index and no base
                m.index = p.gpr(avoid);
                m.scale = pick_scale(p);
                uint64_t iv = p.rng() % 64;
                m.disp = int64_t(target - iv * m.scale);
                st.gpr[m.index] = iv | (m.a32 ? p.rng() << 32 : 0);
            }
            return m;
        default: break;
    }
    m.base = pick_base(p, avoid);
    m.disp = pick_disp(p, m.disp_size);
    uint64_t addr = target - uint64_t(m.disp);
    if (p.rng() % 2) {
        m.index = p.gpr(avoid);
        while (m.index == m.base) m.index = p.gpr(avoid);
        m.scale = pick_scale(p);
        uint64_t iv = p.rng() % 3 == 0 ? p.edge(p.rng() % 2 ? 1 : 4) : p.rng() % 256;
        if (!m.a32) iv = uint64_t(int64_t(int32_t(iv)));  // keep base+index within reach of the target
        addr -= iv * m.scale;
        st.gpr[m.index] = m.a32 ? ((iv & amask) | p.rng() << 32) : iv;
    }
    st.gpr[m.base] = m.a32 ? ((addr & amask) | p.rng() << 32) : addr;
    return m;
}

Mem random_lea(Picker& p, State& st, bool a32) {
    Mem m;
    m.a32 = a32;
    switch (p.rng() % 8) {
        case 0:
            m.rip = true;
            m.target = p.rng() % 3 ? kDataAddr + (p.rng() % 0x10000) : kCodeAddr + int32_t(p.rng());
            return m;
        case 1:
            m.disp = int32_t(p.rng());
            m.disp_size = 4;
            if (p.rng() % 2) {
                m.index = p.gpr();
                m.scale = pick_scale(p);
            }
            return m;
        default: break;
    }
    m.base = pick_base(p, {});
    if (m.base == 4) st.gpr[4] = p.edge(8);
    m.disp = pick_disp(p, m.disp_size);
    if (p.rng() % 2) {
        m.index = p.gpr();
        m.scale = pick_scale(p);
    }
    return m;
}

}  // namespace m86::difftest::enc
