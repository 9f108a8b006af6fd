// Differential-test forms: int1 - shifts and rotates (SHL SHR SAR ROL ROR RCL RCR SHLD SHRD),
// multiply and divide (MUL IMUL DIV IDIV MULX), bit operations (BT BTS BTR BTC BSF BSR LZCNT TZCNT
// POPCNT), BMI1/BMI2 (ANDN BEXTR BLSI BLSMSK BLSR BZHI PDEP PEXT RORX SARX SHLX SHRX) and ADX
// (ADCX ADOX). Every form name starts with "int1 ".
//
// Each form covers one instruction x operand width x operand form, with operand values drawn from
// edge cases (counts 0, 1, width-1, width, > width, 31/63/64+; divisions provoking #DE; BT bit
// offsets that are negative or large with memory operands, some reaching into the guard page).
// undefined_flags come from the SDM instruction pages. On an AMD host some forms are registered a
// second time, suffixed " [zen4]", with the undefined flags the interpreter deliberately gives
// Zen 4's values for left unmasked (see the notes in src/cpu/ops/{shift,muldiv,bit}.cpp).
#include <cpuid.h>

#include <cstring>

#include "diff/harness.h"

namespace m86::difftest {
namespace {

using Xbyak::Address;
using Xbyak::Operand;
using Xbyak::Reg;
using Xbyak::Reg32e;
using Xbyak::Reg64;
using Gen = Xbyak::CodeGenerator;
using Emit = std::function<void(Gen&, Picker&, State&)>;

namespace fl = cpu::fl;
constexpr uint64_t CF = fl::CF, PF = fl::PF, AF = fl::AF, ZF = fl::ZF, SF = fl::SF, OF = fl::OF;
constexpr uint64_t kAll = fl::kArith;
constexpr int kRAX = 0, kRCX = 1, kRDX = 2, kRSP = 4;

bool host_is_amd() {
    unsigned a, b, c, d;
    return __get_cpuid(0, &a, &b, &c, &d) && b == 0x68747541;  // "Auth"enticAMD
}

std::string wname(unsigned w) { return std::to_string(8 * w); }
uint64_t wmask(unsigned w) { return w == 8 ? ~0ull : (1ull << (8 * w)) - 1; }

// A GPR other than RSP and those in the `avoid` bit mask.
int pick_gpr(Picker& p, uint32_t avoid = 0) {
    for (;;) {
        int n = int(p.rng() % 16);
        if (n != kRSP && !(avoid >> n & 1)) return n;
    }
}

const Reg& reg(Picker& p, unsigned w, int n) {
    switch (w) {
        case 1: return p.r8(n);
        case 2: return p.r16(n);
        case 4: return p.r32(n);
        default: return p.r64(n);
    }
}
const Reg32e& reg32e(Picker& p, unsigned w, int n) {
    if (w == 8) return p.r64(n);
    return p.r32(n);
}

// Set the low w bytes of a GPR (the rest stays random).
void set_low(State& st, int n, unsigned w, uint64_t v) { st.gpr[n] = (st.gpr[n] & ~wmask(w)) | (v & wmask(w)); }

// A w-byte memory operand in the data area holding `v` (when it is inside the data area; a few
// percent of the offsets reach into the guard page, and the access must raise #PF). Its base
// register is not in `avoid`; the displacement is 0, 8-bit or 32-bit.
Address mem_op(Gen& g, Picker& p, State& st, unsigned w, uint64_t v, uint32_t avoid = 0, int* base = nullptr) {
    int b = pick_gpr(p, avoid);
    uint64_t off = p.data_offset(w);
    int32_t disp = 0;
    switch (p.rng() % 3) {
        case 1: disp = int32_t(int8_t(p.rng())); break;
        case 2: disp = int32_t(p.rng() % 0x100000) - 0x80000; break;
    }
    st.gpr[b] = kDataAddr + off - int64_t(disp);
    if (off + w <= kDataSize) std::memcpy(st.data + off, &v, w);
    if (base) *base = b;
    const Reg64& r = p.r64(b);
    switch (w) {
        case 1: return g.byte[r + disp];
        case 2: return g.word[r + disp];
        case 4: return g.dword[r + disp];
        default: return g.qword[r + disp];
    }
}

// A shift or rotate count: edges around the operand width and the 5/6-bit masks, or random.
uint64_t pick_count(Picker& p, unsigned w) {
    static const unsigned kEdges[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 18, 31, 32, 33, 63, 64, 65, 127, 128, 255};
    switch (p.rng() % 4) {
        case 0: return 8 * w - 1 + p.rng() % 3 - 1;  // width-2 .. width
        case 1: return p.rng() % 256;
        default: return kEdges[p.rng() % (sizeof kEdges / sizeof kEdges[0])];
    }
}
// A count whose masked value is below the operand width (so CF is defined for 8/16-bit SHL/SHR).
uint64_t pick_count_below(Picker& p, unsigned w) {
    unsigned mask = w == 8 ? 63 : 31;
    for (;;) {
        uint64_t n = pick_count(p, w);
        if ((n & mask) < 8 * w) return n;
    }
}

// A source value for bit scans and BMI: edges, zero often, single bits, bit runs.
uint64_t pick_bits(Picker& p, unsigned w) {
    switch (p.rng() % 6) {
        case 0: return 0;
        case 1: return 1ull << (p.rng() % (8 * w));
        case 2: {
            unsigned a = unsigned(p.rng() % (8 * w)), b = unsigned(p.rng() % (8 * w));
            if (a > b) std::swap(a, b);
            return (wmask(w) >> (8 * w - 1 - (b - a))) << a;  // bits a..b set
        }
        default: return p.edge(w);
    }
}

class Forms {
public:
    explicit Forms(std::vector<Form>& v) : v_(v), amd_(host_is_amd()) {}

    // Register a form; `zen_undef` (when not kSame) registers a second copy on AMD hosts with
    // only those flags masked.
    static constexpr uint64_t kSame = ~0ull;
    void add(const std::string& name, uint64_t undef, Emit e, uint64_t zen_undef = kSame, int cases = 0) {
        Form f;
        f.name = "int1 " + name;
        f.emit = e;
        f.undefined_flags = undef;
        f.cases = cases;
        v_.push_back(f);
        if (amd_ && zen_undef != kSame && zen_undef != undef) {
            f.name += " [zen4]";
            f.undefined_flags = zen_undef;
            f.cases = cases ? cases / 4 : 250;
            v_.push_back(f);
        }
    }

    // A form only for AMD hosts (behaviour the SDM leaves undefined, checked against Zen 4).
    void add_amd(const std::string& name, uint64_t undef, Emit e, int cases = 500) {
        if (!amd_) return;
        Form f;
        f.name = "int1 " + name + " [zen4]";
        f.emit = e;
        f.undefined_flags = undef;
        f.cases = cases;
        v_.push_back(f);
    }

private:
    std::vector<Form>& v_;
    bool amd_;
};

// ---- shifts and rotates --------------------------------------------------------------------------

// Group-2 operation by ModRM.reg extension (SDM Vol. 2, Table A-6): 0 ROL 1 ROR 2 RCL 3 RCR 4 SHL
// 5 SHR 6 SHL alias ("SAL") 7 SAR. count < 0 means CL.
void grp2(Gen& g, int ext, const Operand& op, int count) {
    const auto& cl = Xbyak::util::cl;
    switch (ext) {
        case 0: count < 0 ? g.rol(op, cl) : g.rol(op, count); break;
        case 1: count < 0 ? g.ror(op, cl) : g.ror(op, count); break;
        case 2: count < 0 ? g.rcl(op, cl) : g.rcl(op, count); break;
        case 3: count < 0 ? g.rcr(op, cl) : g.rcr(op, count); break;
        case 4: count < 0 ? g.shl(op, cl) : g.shl(op, count); break;
        case 5: count < 0 ? g.shr(op, cl) : g.shr(op, count); break;
        default: count < 0 ? g.sar(op, cl) : g.sar(op, count); break;
    }
}

// Raw group-2 encoding with a register destination (xbyak cannot emit /6, nor C0/C1 with count 1).
// kind: 0 = by 1 (D0/D1), 1 = CL (D2/D3), 2 = imm8 (C0/C1).
void grp2_raw(Gen& g, unsigned w, int r, int ext, int kind, uint8_t imm) {
    if (w == 2) g.db(0x66);
    uint8_t rex = 0x40 | (w == 8 ? 8 : 0) | (r >= 8 ? 1 : 0);
    if (rex != 0x40 || (w == 1 && r >= 4)) g.db(rex);
    uint8_t op = kind == 0 ? 0xd0 : kind == 1 ? 0xd2 : 0xc0;
    g.db(op | (w == 1 ? 0 : 1));
    g.db(0xc0 | (ext << 3) | (r & 7));
    if (kind == 2) g.db(imm);
}

enum CountKind { kBy1, kByCl, kByImm };

void shift_forms(Forms& F) {
    struct Op {
        const char* name;
        int ext;
        uint64_t undef1, undef_n;  // undefined flags with count 1 / any count (SDM)
        bool shift;                // SHL/SHR: CF undefined when count >= width (8/16-bit)
    };
    static const Op kOps[] = {
        {"rol", 0, 0, OF, false},       {"ror", 1, 0, OF, false},       {"rcl", 2, 0, OF, false},
        {"rcr", 3, 0, OF, false},       {"shl", 4, AF, AF | OF, true},  {"shr", 5, AF, AF | OF, true},
        {"sar", 7, AF, AF | OF, false},
    };
    static const char* kKindName[] = {"1", "cl", "imm8"};
    for (const Op& o : kOps) {
        for (unsigned w : {1u, 2u, 4u, 8u}) {
            for (bool mem : {false, true}) {
                for (int kind : {kBy1, kByCl, kByImm}) {
                    // below: counts whose masked value is < width only (8/16-bit SHL/SHR then keep CF).
                    for (bool below : {false, true}) {
                        bool cf_undef = o.shift && w < 4 && kind != kBy1;
                        if (below && !cf_undef) continue;
                        std::string name = std::string(o.name) + " " + (mem ? "m" : "r") + wname(w) + ", " +
                                           kKindName[kind] + (below ? " (count < width)" : "");
                        uint64_t undef = kind == kBy1 ? o.undef1 : o.undef_n;
                        if (cf_undef && !below) undef |= CF;
                        Op op = o;
                        F.add(name, undef,
                              [op, w, mem, kind, below](Gen& g, Picker& p, State& st) {
                                  uint64_t n = below ? pick_count_below(p, w) : pick_count(p, w);
                                  if (kind == kByCl) st.gpr[kRCX] = (p.rng() & ~0xffull) | (n & 0xff);
                                  uint64_t v = p.edge(w);
                                  int imm = kind == kBy1 ? 1 : kind == kByCl ? -1 : int(n & 0xff);
                                  if (mem) {
                                      Address a = mem_op(g, p, st, w, v, 1u << kRCX);
                                      // xbyak emits D0/D1 for an immediate 1: keep imm8 forms imm8
                                      // with a count that masks to 1.
                                      if (imm == 1 && kind == kByImm) imm = w == 8 ? 65 : 33;
                                      grp2(g, op.ext, a, imm);
                                  } else {
                                      int r = pick_gpr(p);  // may be RCX itself
                                      if (r != kRCX || kind != kByCl) set_low(st, r, w, v);
                                      if (imm == 1 && kind == kByImm)
                                          grp2_raw(g, w, r, op.ext, 2, 1);
                                      else
                                          grp2(g, op.ext, reg(p, w, r), imm);
                                  }
                              });
                    }
                }
            }
        }
        // AH/CH/DH/BH destinations (no REX), by CL.
        Op op = o;
        F.add(std::string(o.name) + " r8h, cl", o.undef_n | (o.shift ? CF : 0), [op](Gen& g, Picker& p, State& st) {
            static const Xbyak::Reg8 kHigh[4] = {Xbyak::util::ah, Xbyak::util::ch, Xbyak::util::dh, Xbyak::util::bh};
            st.gpr[kRCX] = (st.gpr[kRCX] & ~0xffull) | (pick_count(p, 1) & 0xff);
            grp2(g, op.ext, kHigh[p.rng() % 4], -1);
        });
    }
    // The /6 encoding (an undocumented alias of SHL), register forms, all widths and count kinds.
    F.add("shl r, 1|cl|imm8 (/6 alias)", AF | OF, [](Gen& g, Picker& p, State& st) {
        unsigned w = 1u << (p.rng() % 4);
        int kind = int(p.rng() % 3);
        uint64_t n = pick_count_below(p, w);
        int r = pick_gpr(p, 1u << kRCX);
        set_low(st, r, w, p.edge(w));
        if (kind == kByCl) st.gpr[kRCX] = (p.rng() & ~0xffull) | (n & 0xff);
        grp2_raw(g, w, r, 6, kind, uint8_t(n));
    });
    // Zen 4's values for the undefined OF (count != 1) and AF, and CF for counts >= width.
    for (const Op& o : kOps) {
        Op op = o;
        F.add(std::string(o.name) + " r, cl (all widths, any count)", kAll,
              [op](Gen& g, Picker& p, State& st) {
                  unsigned w = 1u << (p.rng() % 4);
                  st.gpr[kRCX] = (p.rng() & ~0xffull) | (pick_count(p, w) & 0xff);
                  int r = pick_gpr(p, 1u << kRCX);
                  set_low(st, r, w, p.edge(w));
                  grp2(g, op.ext, reg(p, w, r), -1);
              },
              0, 1000);
    }
}

void double_shift_forms(Forms& F) {
    for (bool left : {true, false}) {
        for (unsigned w : {2u, 4u, 8u}) {
            for (bool mem : {false, true}) {
                for (bool cl : {false, true}) {
                    std::string name = std::string(left ? "shld " : "shrd ") + (mem ? "m" : "r") + wname(w) + ", r" +
                                       wname(w) + (cl ? ", cl" : ", imm8");
                    // SDM: AF undefined; OF undefined unless the count is 1; a 16-bit count > 16
                    // gives undefined results and flags, so those counts are not generated.
                    F.add(name, AF | OF,
                          [left, w, mem, cl](Gen& g, Picker& p, State& st) {
                              uint64_t n;
                              do n = pick_count(p, w);
                              while (w == 2 && (n & 31) > 16);
                              if (cl) st.gpr[kRCX] = (p.rng() & ~0xffull) | (n & 0xff);
                              int s = pick_gpr(p);  // the source may be RCX (count and source)
                              if (s != kRCX || !cl) set_low(st, s, w, p.edge(w));
                              const Reg& src = reg(p, w, s);
                              auto emit = [&](const Operand& d) {
                                  if (left)
                                      cl ? g.shld(d, src, Xbyak::util::cl) : g.shld(d, src, uint8_t(n));
                                  else
                                      cl ? g.shrd(d, src, Xbyak::util::cl) : g.shrd(d, src, uint8_t(n));
                              };
                              if (mem) {
                                  emit(mem_op(g, p, st, w, p.edge(w), (1u << kRCX) | (1u << s)));
                              } else {
                                  int d = pick_gpr(p, cl ? 1u << kRCX : 0);
                                  set_low(st, d, w, p.edge(w));
                                  emit(reg(p, w, d));
                              }
                          },
                          0);
                }
            }
        }
    }
    // 16-bit counts 17..31: undefined results and flags (SDM); Zen 4 repeats the source.
    for (bool left : {true, false}) {
        F.add_amd(std::string(left ? "shld" : "shrd") + " r16, r16, cl (count > 16)", 0,
                  [left](Gen& g, Picker& p, State& st) {
                      st.gpr[kRCX] = (p.rng() & ~0xffull) | (17 + p.rng() % 15) | (p.rng() % 8) << 5;
                      int d = pick_gpr(p, 1u << kRCX), s = pick_gpr(p, 1u << kRCX);
                      set_low(st, d, 2, p.edge(2));
                      if (s != d) set_low(st, s, 2, p.edge(2));
                      if (left) g.shld(p.r16(d), p.r16(s), Xbyak::util::cl);
                      else g.shrd(p.r16(d), p.r16(s), Xbyak::util::cl);
                  });
    }
}

// ---- multiply and divide -------------------------------------------------------------------------

// rDX:rAX (AX for bytes) = a 2w-byte dividend given as hi:lo.
void set_dividend(State& st, unsigned w, uint64_t hi, uint64_t lo) {
    if (w == 1) {
        set_low(st, kRAX, 2, ((hi & 0xff) << 8) | (lo & 0xff));
    } else {
        set_low(st, kRAX, w, lo);
        set_low(st, kRDX, w, hi);
    }
}

// Divisor and dividend for DIV (signed = false) or IDIV: #DE cases (zero divisor, quotient
// overflow, just past the quotient range) and valid ones including the range's ends.
void pick_division(Picker& p, State& st, unsigned w, bool is_signed, uint64_t& divisor) {
    using I128 = __int128;
    const unsigned bits = 8 * w;
    const uint64_t m = wmask(w);
    auto sext = [&](uint64_t v) -> I128 { return I128(int64_t(v << (64 - bits)) >> (64 - bits)); };
    uint64_t d;
    do d = p.edge(w) & m;
    while (d == 0);
    unsigned mode = unsigned(p.rng() % 10);
    if (mode == 0) {  // zero divisor
        divisor = 0;
        set_dividend(st, w, p.edge(w), p.edge(w));
        return;
    }
    divisor = d;
    if (mode == 1) {  // random dividend: mostly a quotient overflow
        set_dividend(st, w, p.rng(), p.rng());
        return;
    }
    if (!is_signed) {
        uint64_t hi;
        if (mode == 2) hi = d;            // quotient 2^bits: #DE
        else if (mode == 3) hi = d - 1;   // largest quotients
        else hi = p.rng() % d;
        set_dividend(st, w, hi, mode == 3 ? m - p.rng() % 4 : p.edge(w));
        return;
    }
    // Signed: dividend = q * d + r with |r| < |d| and r of the dividend's sign.
    I128 sd = sext(d);
    I128 qmax = (I128(1) << (bits - 1)) - 1, qmin = -(I128(1) << (bits - 1));
    I128 q;
    switch (mode) {
        case 2: q = qmax + 1; break;  // just past the range: #DE
        case 3: q = qmin - 1; break;
        case 4: q = qmax; break;
        case 5: q = qmin; break;
        default: q = sext(p.edge(w)); break;
    }
    if (mode == 6 || mode == 7) {  // by -1: the smallest 2w-byte dividend, or -2^(bits-1): #DE
        divisor = m;
        I128 dividend = mode == 6 ? I128(~(unsigned __int128)0 << (2 * bits - 1)) : qmin;  // -2^(2*bits-1)
        unsigned __int128 u = (unsigned __int128)dividend;
        set_dividend(st, w, uint64_t(u >> bits), uint64_t(u));
        return;
    }
    I128 abs_d = sd < 0 ? -sd : sd;
    I128 prod = q * sd;
    I128 r = I128(p.rng() % uint64_t(abs_d));
    if (prod < 0 || (prod == 0 && p.rng() % 2)) r = -r;
    I128 dividend = prod + r;
    unsigned __int128 u = (unsigned __int128)dividend;
    set_dividend(st, w, uint64_t(u >> bits), uint64_t(u));
}

enum MulDiv { kMul, kImul, kDiv, kIdiv };

void muldiv_forms(Forms& F) {
    static const char* kName[] = {"mul", "imul", "div", "idiv"};
    for (int op : {kMul, kImul, kDiv, kIdiv}) {
        // SDM: MUL/IMUL leave SF ZF AF PF undefined, DIV/IDIV all six.
        uint64_t undef = op <= kImul ? SF | ZF | AF | PF : kAll;
        for (unsigned w : {1u, 2u, 4u, 8u}) {
            for (bool mem : {false, true}) {
                std::string name = std::string(kName[op]) + (mem ? " m" : " r") + wname(w);
                F.add(name, undef,
                      [op, w, mem](Gen& g, Picker& p, State& st) {
                          uint64_t v;
                          if (op >= kDiv) {
                              pick_division(p, st, w, op == kIdiv, v);
                          } else {
                              v = p.edge(w);
                              set_low(st, kRAX, w, p.edge(w));
                          }
                          auto emit = [&](const Operand& s) {
                              switch (op) {
                                  case kMul: g.mul(s); break;
                                  case kImul: g.imul(s); break;
                                  case kDiv: g.div(s); break;
                                  default: g.idiv(s); break;
                              }
                          };
                          if (mem) {
                              emit(mem_op(g, p, st, w, v, (1u << kRAX) | (1u << kRDX)));
                          } else {
                              // Mostly not rAX/rDX (then the operands are the chosen ones).
                              int r = p.rng() % 8 ? pick_gpr(p, (1u << kRAX) | (1u << kRDX)) : pick_gpr(p);
                              if (r != kRAX && (r != kRDX || w == 1)) set_low(st, r, w, v);
                              emit(reg(p, w, r));
                          }
                      },
                      op <= kImul ? Forms::kSame : 0);
            }
        }
        // The byte forms with AH/CH/DH/BH as the source (DIV AH divides AX by a part of itself).
        F.add(std::string(kName[op]) + " r8h", undef, [op](Gen& g, Picker& p, State& st) {
            static const Xbyak::Reg8 kHigh[4] = {Xbyak::util::ah, Xbyak::util::ch, Xbyak::util::dh, Xbyak::util::bh};
            uint64_t v;
            if (op >= kDiv) {
                pick_division(p, st, 1, op == kIdiv, v);
            } else {
                set_low(st, kRAX, 1, p.edge(1));
                v = p.edge(1);
            }
            int h = int(p.rng() % 4);  // AH CH DH BH: byte 1 of RAX RCX RDX RBX
            if (h != 0) st.gpr[h] = (st.gpr[h] & ~0xff00ull) | ((v & 0xff) << 8);
            switch (op) {
                case kMul: g.mul(kHigh[h]); break;
                case kImul: g.imul(kHigh[h]); break;
                case kDiv: g.div(kHigh[h]); break;
                default: g.idiv(kHigh[h]); break;
            }
        });
    }
    // Zen 4: DIV/IDIV keep CF OF and set PF=0 AF=1 ZF=0 SF=0. (It keeps SF ZF AF PF on MUL/IMUL,
    // which the interpreter does not model: see muldiv.cpp.)
    for (int op : {kMul, kImul, kDiv, kIdiv}) {
        F.add(std::string(kName[op]) + " r (all widths)", op <= kImul ? SF | ZF | AF | PF : kAll,
              [op](Gen& g, Picker& p, State& st) {
                  unsigned w = 1u << (p.rng() % 4);
                  uint64_t v;
                  if (op >= kDiv) {
                      pick_division(p, st, w, op == kIdiv, v);
                  } else {
                      set_low(st, kRAX, w, p.edge(w));
                      v = p.edge(w);
                  }
                  int r = pick_gpr(p, (1u << kRAX) | (1u << kRDX));
                  set_low(st, r, w, v);
                  const Reg& s = reg(p, w, r);
                  switch (op) {
                      case kMul: g.mul(s); break;
                      case kImul: g.imul(s); break;
                      case kDiv: g.div(s); break;
                      default: g.idiv(s); break;
                  }
              },
              op <= kImul ? Forms::kSame : 0, 1000);
    }

    // IMUL r, r/m and IMUL r, r/m, imm8/imm16/imm32 (sign-extended).
    for (unsigned w : {2u, 4u, 8u}) {
        for (bool mem : {false, true}) {
            for (int immk : {0, 8, 32}) {
                std::string name = "imul r" + wname(w) + ", " + (mem ? "m" : "r") + wname(w) +
                                   (immk == 8 ? ", imm8" : immk == 32 ? (w == 2 ? ", imm16" : ", imm32") : "");
                F.add(name, SF | ZF | AF | PF,
                      [w, mem, immk](Gen& g, Picker& p, State& st) {
                          int d = pick_gpr(p);
                          set_low(st, d, w, p.edge(w));
                          int imm = 0;
                          if (immk == 8) {
                              imm = int(int8_t(p.edge(1)));
                          } else if (immk == 32) {
                              do imm = w == 2 ? int(int16_t(p.edge(2))) : int(int32_t(p.edge(4)));
                              while (imm >= -128 && imm <= 127);  // keep the long encoding
                          }
                          auto emit = [&](const Operand& s) {
                              if (immk) g.imul(reg(p, w, d), s, imm);
                              else g.imul(reg(p, w, d), s);
                          };
                          if (mem) {
                              emit(mem_op(g, p, st, w, p.edge(w), 1u << d));
                          } else {
                              int s = pick_gpr(p);  // may equal d
                              if (s != d) set_low(st, s, w, p.edge(w));
                              emit(reg(p, w, s));
                          }
                      },
                      Forms::kSame);
            }
        }
    }

    // MULX hi, lo, r/m (implicit rDX); the two destinations are sometimes the same register.
    for (unsigned w : {4u, 8u}) {
        for (bool mem : {false, true}) {
            F.add(std::string("mulx r") + wname(w) + ", r" + wname(w) + (mem ? ", m" : ", r") + wname(w), 0,
                  [w, mem](Gen& g, Picker& p, State& st) {
                      set_low(st, kRDX, w, p.edge(w));
                      int hi = pick_gpr(p), lo = p.rng() % 6 ? pick_gpr(p) : hi;
                      if (mem) {
                          g.mulx(reg32e(p, w, hi), reg32e(p, w, lo), mem_op(g, p, st, w, p.edge(w)));
                      } else {
                          int s = pick_gpr(p);
                          if (s != kRDX) set_low(st, s, w, p.edge(w));
                          g.mulx(reg32e(p, w, hi), reg32e(p, w, lo), reg32e(p, w, s));
                      }
                  });
        }
    }
}

// ---- bit test ------------------------------------------------------------------------------------

enum BtKind { kRegReg, kRegImm, kMemImm, kMemReg };

void bt_insn(Gen& g, int op, const Operand& d, const Reg* off, int imm) {
    switch (op) {
        case 0: off ? g.bt(d, *off) : g.bt(d, uint8_t(imm)); break;
        case 1: off ? g.bts(d, *off) : g.bts(d, uint8_t(imm)); break;
        case 2: off ? g.btr(d, *off) : g.btr(d, uint8_t(imm)); break;
        default: off ? g.btc(d, *off) : g.btc(d, uint8_t(imm)); break;
    }
}

// A bit offset for a register operand: edges around the width, large and negative values.
uint64_t pick_bit_offset(Picker& p, unsigned w) {
    switch (p.rng() % 3) {
        case 0: return p.rng() % (8 * w);
        case 1: return p.edge(w);
        default: return p.rng();
    }
}

void bt_forms(Forms& F) {
    static const char* kName[] = {"bt", "bts", "btr", "btc"};
    static const char* kKind[] = {"r{w}, r{w}", "r{w}, imm8", "m{w}, imm8", "m{w}, r{w} (bit string)"};
    // SDM "BT": OF SF AF PF undefined, ZF unaffected.
    const uint64_t undef = OF | SF | AF | PF;
    for (int op = 0; op < 4; ++op) {
        for (unsigned w : {2u, 4u, 8u}) {
            for (int kind : {kRegReg, kRegImm, kMemImm, kMemReg}) {
                for (bool lock : {false, true}) {
                    if (lock && (op == 0 || kind < kMemImm)) continue;
                    std::string k = kKind[kind];
                    for (size_t pos; (pos = k.find("{w}")) != std::string::npos;) k.replace(pos, 3, wname(w));
                    std::string name = std::string(lock ? "lock " : "") + kName[op] + " " + k;
                    F.add(name, undef,
                          [op, w, kind, lock](Gen& g, Picker& p, State& st) {
                              if (kind == kRegReg || kind == kRegImm) {
                                  int d = pick_gpr(p);
                                  set_low(st, d, w, p.edge(w));
                                  if (kind == kRegImm) {
                                      bt_insn(g, op, reg(p, w, d), nullptr, int(p.rng() % 256));
                                  } else {
                                      int o = pick_gpr(p);  // may equal d
                                      if (o != d) set_low(st, o, w, pick_bit_offset(p, w));
                                      bt_insn(g, op, reg(p, w, d), &reg(p, w, o), 0);
                                  }
                                  return;
                              }
                              if (kind == kMemImm) {
                                  Address a = mem_op(g, p, st, w, p.edge(w));
                                  if (lock) g.lock();
                                  bt_insn(g, op, a, nullptr, int(p.rng() % 256));
                                  return;
                              }
                              // Bit-string addressing: the word at EA + w * floor(offset / 8w).
                              // Choose EA (base register + displacement) and the word's index k so
                              // that the word is in the data area, or (sometimes) partly or wholly
                              // in the guard page above it.
                              const int64_t bits = 8 * w;
                              const int64_t size = int64_t(kDataSize);
                              int64_t ea_off = int64_t(p.rng() % uint64_t(size));
                              int64_t kmin = -(ea_off / int64_t(w));               // word >= data start
                              int64_t room = size - int64_t(w) - ea_off;  // floor(room / w):
                              int64_t kmax = room >= 0 ? room / int64_t(w) : -((-room + int64_t(w) - 1) / int64_t(w));
                              int64_t k;
                              unsigned r = unsigned(p.rng() % 100);
                              if (r < 5) k = kmax + 1 + int64_t(p.rng() % 4);  // into the guard page: #PF
                              else if (r < 20) k = kmin + int64_t(p.rng() % 4);  // far below EA
                              else if (r < 35) k = kmax - int64_t(p.rng() % 4);  // far above EA
                              else k = int64_t(p.rng() % 9) - 4;                 // near EA
                              if (k < kmin) k = kmin;
                              // A 16-bit offset reaches only +-2^15 bits.
                              const int64_t lim = w == 2 ? 32768 / bits : INT64_MAX / bits;
                              if (k >= lim) k = lim - 1;
                              if (k < -lim) k = -lim;
                              uint64_t offset = uint64_t(k * bits + int64_t(p.rng() % uint64_t(bits)));
                              int b = pick_gpr(p);
                              int o = pick_gpr(p, 1u << b);
                              int32_t disp = p.rng() % 2 ? 0 : int32_t(int8_t(p.rng()));
                              st.gpr[b] = kDataAddr + uint64_t(ea_off) - int64_t(disp);
                              set_low(st, o, w, offset);
                              // The upper bits of a 16/32-bit offset register are ignored.
                              Address a = w == 2 ? g.word[p.r64(b) + disp] : w == 4 ? g.dword[p.r64(b) + disp]
                                                                                    : g.qword[p.r64(b) + disp];
                              if (lock) g.lock();
                              bt_insn(g, op, a, &reg(p, w, o), 0);
                          },
                          0);
                }
            }
        }
    }
}

// ---- bit scans, counts, BMI, ADX -----------------------------------------------------------------

enum Scan { kBsf, kBsr, kTzcnt, kLzcnt, kPopcnt };

void scan_forms(Forms& F) {
    struct S {
        const char* name;
        int op;
        uint64_t undef, zen_undef;
    };
    // SDM: BSF/BSR leave CF OF SF AF PF undefined; LZCNT/TZCNT OF SF PF AF; POPCNT defines all.
    static const S kOps[] = {
        {"bsf", kBsf, CF | OF | SF | AF | PF, 0},    {"bsr", kBsr, CF | OF | SF | AF | PF, 0},
        {"tzcnt", kTzcnt, OF | SF | PF | AF, 0},     {"lzcnt", kLzcnt, OF | SF | PF | AF, 0},
        {"popcnt", kPopcnt, 0, 0},
    };
    for (const S& s : kOps) {
        for (unsigned w : {2u, 4u, 8u}) {
            for (bool mem : {false, true}) {
                int op = s.op;
                F.add(std::string(s.name) + " r" + wname(w) + (mem ? ", m" : ", r") + wname(w), s.undef,
                      [op, w, mem](Gen& g, Picker& p, State& st) {
                          int d = pick_gpr(p);
                          uint64_t v = pick_bits(p, w);
                          auto emit = [&](const Operand& src) {
                              const Reg& r = reg(p, w, d);
                              switch (op) {
                                  case kBsf: g.bsf(r, src); break;
                                  case kBsr: g.bsr(r, src); break;
                                  case kTzcnt: g.tzcnt(r, src); break;
                                  case kLzcnt: g.lzcnt(r, src); break;
                                  default: g.popcnt(r, src); break;
                              }
                          };
                          if (mem) {
                              emit(mem_op(g, p, st, w, v));
                          } else {
                              int sr = pick_gpr(p);  // may equal d
                              set_low(st, sr, w, v);
                              emit(reg(p, w, sr));
                          }
                      },
                      s.zen_undef);
            }
        }
    }
}

enum Bmi { kAndn, kBextr, kBlsi, kBlsmsk, kBlsr, kBzhi, kPdep, kPext, kRorx, kSarx, kShlx, kShrx };

void bmi_forms(Forms& F) {
    struct B {
        const char* name;
        int op;
        uint64_t undef;
    };
    // SDM: ANDN, BLSI, BLSMSK, BLSR, BZHI: AF PF undefined; BEXTR: AF SF PF; the rest no flags.
    static const B kOps[] = {
        {"andn", kAndn, AF | PF},     {"bextr", kBextr, AF | SF | PF}, {"blsi", kBlsi, AF | PF},
        {"blsmsk", kBlsmsk, AF | PF}, {"blsr", kBlsr, AF | PF},        {"bzhi", kBzhi, AF | PF},
        {"pdep", kPdep, 0},           {"pext", kPext, 0},              {"rorx", kRorx, 0},
        {"sarx", kSarx, 0},           {"shlx", kShlx, 0},              {"shrx", kShrx, 0},
    };
    for (const B& b : kOps) {
        for (unsigned w : {4u, 8u}) {
            for (bool mem : {false, true}) {
                int op = b.op;
                F.add(std::string(b.name) + " r" + wname(w) + (mem ? " (mem)" : " (reg)"), b.undef,
                      [op, w, mem](Gen& g, Picker& p, State& st) {
                          // The r/m operand's value, and the other source (a register or imm8).
                          uint64_t v = pick_bits(p, w), other;
                          switch (op) {
                              case kBextr: {  // start[7:0], length[15:8], random bits above
                                  uint64_t start = p.rng() % 3 ? p.rng() % (8 * w + 8) : p.rng() % 256;
                                  uint64_t len = p.rng() % 3 ? p.rng() % (8 * w + 8) : p.rng() % 256;
                                  other = (p.rng() & ~0xffffull) | (len << 8) | start;
                                  break;
                              }
                              case kBzhi:
                                  other = (p.rng() & ~0xffull) |
                                          (p.rng() % 3 ? p.rng() % (8 * w + 4) : p.rng() % 256);
                                  break;
                              case kRorx:
                              case kSarx:
                              case kShlx:
                              case kShrx: other = pick_count(p, w) | (p.rng() % 2 ? p.rng() & ~0xffull : 0); break;
                              default: other = pick_bits(p, w); break;
                          }
                          int d = pick_gpr(p);
                          int o = pick_gpr(p);  // the register source (may equal d)
                          set_low(st, o, w, other);
                          const Reg32e& rd = reg32e(p, w, d);
                          const Reg32e& ro = reg32e(p, w, o);
                          auto emit = [&](const Operand& rm) {
                              switch (op) {
                                  case kAndn: g.andn(rd, ro, rm); break;
                                  case kBextr: g.bextr(rd, rm, ro); break;
                                  case kBlsi: g.blsi(rd, rm); break;
                                  case kBlsmsk: g.blsmsk(rd, rm); break;
                                  case kBlsr: g.blsr(rd, rm); break;
                                  case kBzhi: g.bzhi(rd, rm, ro); break;
                                  case kPdep: g.pdep(rd, ro, rm); break;
                                  case kPext: g.pext(rd, ro, rm); break;
                                  case kRorx: g.rorx(rd, rm, uint8_t(other)); break;
                                  case kSarx: g.sarx(rd, rm, ro); break;
                                  case kShlx: g.shlx(rd, rm, ro); break;
                                  default: g.shrx(rd, rm, ro); break;
                              }
                          };
                          if (mem) {
                              emit(mem_op(g, p, st, w, v, 1u << o));
                          } else {
                              int s = p.rng() % 8 ? pick_gpr(p, 1u << o) : o;
                              if (s != o) set_low(st, s, w, v);
                              emit(reg32e(p, w, s));
                          }
                      },
                      0);
            }
        }
    }
    for (bool ox : {false, true}) {
        for (unsigned w : {4u, 8u}) {
            for (bool mem : {false, true}) {
                F.add(std::string(ox ? "adox r" : "adcx r") + wname(w) + (mem ? ", m" : ", r") + wname(w), 0,
                      [ox, w, mem](Gen& g, Picker& p, State& st) {
                          int d = pick_gpr(p);
                          set_low(st, d, w, p.edge(w));
                          auto emit = [&](const Operand& s) {
                              ox ? g.adox(reg32e(p, w, d), s) : g.adcx(reg32e(p, w, d), s);
                          };
                          if (mem) {
                              emit(mem_op(g, p, st, w, p.edge(w)));
                          } else {
                              int s = pick_gpr(p);
                              if (s != d) set_low(st, s, w, p.edge(w));
                              emit(reg32e(p, w, s));
                          }
                      });
            }
        }
    }
}

}  // namespace

void forms_int1(std::vector<Form>& v) {
    Forms F(v);
    shift_forms(F);
    double_shift_forms(F);
    muldiv_forms(F);
    bt_forms(F);
    scan_forms(F);
    bmi_forms(F);
}

}  // namespace m86::difftest
