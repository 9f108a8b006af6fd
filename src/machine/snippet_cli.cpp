// `micro86 snippet FILE`: run raw machine code in the flat snippet environment (snippet.h) and print
// the final state, as text or JSON, optionally tracing every instruction.
#include <fmt/format.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "cpu/decode.h"
#include "machine/cli.h"
#include "machine/snippet.h"

namespace m86::machine {

using namespace m86::cpu;

namespace {

const char* const kGprNames[16] = {"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
                                   "r8",  "r9",  "r10", "r11", "r12", "r13", "r14", "r15"};

const char* vector_name(uint8_t v) {
    static const char* const names[] = {"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#CSO",
                                        "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM"};
    return v < std::size(names) ? names[v] : "#?";
}

std::string xmm_hex(const Xmm& x) { return fmt::format("0x{:016x}{:016x}", x.q[1], x.q[0]); }

// Set a register from NAME=VALUE. Returns an error message, or "" on success.
std::string set_register(CpuState& s, const std::string& spec) {
    auto eq = spec.find('=');
    if (eq == std::string::npos) return fmt::format("--reg expects NAME=VALUE, got '{}'", spec);
    std::string name = spec.substr(0, eq), val = spec.substr(eq + 1);
    for (auto& ch : name) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    if (val.empty()) return fmt::format("--reg {}: missing value", name);
    auto parse = [&](const std::string& t, uint64_t& out) {
        char* end = nullptr;
        errno = 0;
        out = std::strtoull(t.c_str(), &end, 0);
        return errno == 0 && end && *end == 0 && !t.empty();
    };
    if (name.rfind("xmm", 0) == 0) {
        char* end = nullptr;
        long n = std::strtol(name.c_str() + 3, &end, 10);
        if (*end || n < 0 || n > 15) return fmt::format("--reg: unknown register '{}'", name);
        std::string hex = val.rfind("0x", 0) == 0 || val.rfind("0X", 0) == 0 ? val.substr(2) : val;
        if (hex.empty() || hex.size() > 32 || hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)
            return fmt::format("--reg {}: expected up to 32 hex digits, got '{}'", name, val);
        hex = std::string(32 - hex.size(), '0') + hex;
        uint64_t hi, lo;
        parse("0x" + hex.substr(0, 16), hi);
        parse("0x" + hex.substr(16), lo);
        s.xmm[n].q[1] = hi;
        s.xmm[n].q[0] = lo;
        return "";
    }
    uint64_t v;
    if (!parse(val, v)) return fmt::format("--reg {}: '{}' is not a number", name, val);
    for (int r = 0; r < 16; r++)
        if (name == kGprNames[r]) return s.gpr[r] = v, "";
    if (name == "rip") return s.rip = v, "";
    if (name == "rflags") return s.rflags = (v | fl::kFixed1), "";
    if (name == "mxcsr") {
        if (v >> 16) return "--reg mxcsr: value does not fit in 16 bits (reserved bits would #GP)";
        return s.mxcsr = uint32_t(v), "";
    }
    if (name == "fcw") return s.x87.fcw = uint16_t(v), "";
    if (name == "fsw") return s.x87.fsw = uint16_t(v), "";
    return fmt::format("--reg: unknown register '{}'", name);
}

void print_text(CpuState& s, StopReason why, const Fault& f, uint64_t icount) {
    for (int r = 0; r < 16; r++) fmt::print("{:>6} = 0x{:016x}{}", kGprNames[r], s.gpr[r], r % 4 == 3 ? "\n" : "  ");
    fmt::print("   rip = 0x{:016x}  rflags = 0x{:016x}  mxcsr = 0x{:08x}  fcw = 0x{:04x}  fsw = 0x{:04x}\n", s.rip,
               s.rflags, s.mxcsr, s.x87.fcw, s.x87.fsw);
    for (int r = 0; r < 16; r++) fmt::print("{:>6} = {}{}", fmt::format("xmm{}", r), xmm_hex(s.xmm[r]), r % 2 ? "\n" : "  ");
    switch (why) {
        case StopReason::Halt: fmt::print("stopped: hlt after {} instructions\n", icount); break;
        case StopReason::Limit: fmt::print("stopped: instruction limit ({}) reached\n", icount); break;
        case StopReason::Exception:
            fmt::print("stopped: exception {} (vector {}){} after {} instructions\n", vector_name(f.vector), f.vector,
                       f.error_code != kNoErrorCode ? fmt::format(", error code 0x{:x}", f.error_code) : "",
                       icount);
            break;
        default: fmt::print("stopped after {} instructions\n", icount); break;
    }
}

void print_json(CpuState& s, StopReason why, const Fault& f) {
    std::string out = "{";
    auto kv = [&](const std::string& k, const std::string& v) {
        if (out.size() > 1) out += ", ";
        out += fmt::format("\"{}\": \"{}\"", k, v);
    };
    for (int r = 0; r < 16; r++) kv(kGprNames[r], fmt::format("0x{:x}", s.gpr[r]));
    kv("rip", fmt::format("0x{:x}", s.rip));
    kv("rflags", fmt::format("0x{:x}", s.rflags));
    for (int r = 0; r < 16; r++) kv(fmt::format("xmm{}", r), s.xmm[r].q[1] ? fmt::format("0x{:x}{:016x}", s.xmm[r].q[1], s.xmm[r].q[0])
                                                       : fmt::format("0x{:x}", s.xmm[r].q[0]));
    kv("mxcsr", fmt::format("0x{:x}", s.mxcsr));
    kv("fcw", fmt::format("0x{:x}", s.x87.fcw));
    kv("fsw", fmt::format("0x{:x}", s.x87.fsw));
    if (why == StopReason::Exception) {
        out += fmt::format(", \"exception\": {{\"vector\": \"0x{:x}\", \"name\": \"{}\"", f.vector, vector_name(f.vector));
        if (f.error_code != kNoErrorCode) out += fmt::format(", \"error_code\": \"0x{:x}\"", f.error_code);
        if (f.vector == kPF) out += fmt::format(", \"cr2\": \"0x{:x}\"", f.cr2);
        out += "}";
    }
    out += "}";
    fmt::print("{}\n", out);
}

// Print the registers an instruction changed (for --trace).
std::string state_diff(const CpuState& a, const CpuState& b) {
    std::string d;
    for (int r = 0; r < 16; r++)
        if (a.gpr[r] != b.gpr[r]) d += fmt::format(" {}=0x{:x}", kGprNames[r], b.gpr[r]);
    if (a.rflags != b.rflags) d += fmt::format(" rflags=0x{:x}", b.rflags);
    for (int r = 0; r < 16; r++)
        if (!(a.xmm[r] == b.xmm[r])) d += fmt::format(" xmm{}={}", r, xmm_hex(b.xmm[r]));
    if (a.mxcsr != b.mxcsr) d += fmt::format(" mxcsr=0x{:x}", b.mxcsr);
    if (a.x87.fsw != b.x87.fsw) d += fmt::format(" fsw=0x{:x}", b.x87.fsw);
    if (a.x87.fcw != b.x87.fcw) d += fmt::format(" fcw=0x{:x}", b.x87.fcw);
    for (int r = 0; r < 8; r++)
        if (!(a.x87.st[r] == b.x87.st[r])) d += fmt::format(" R{}=0x{:04x}:{:016x}", r, b.x87.st[r].se, b.x87.st[r].mant);
    return d;
}

constexpr const char* kUsage =
    "usage: micro86 snippet FILE [--bits 16|32|64] [--reg NAME=VALUE]... [--json] [--trace] [--max-insns N]\n"
    "\n"
    "Runs raw x86-64 machine code from FILE in a flat 64-bit environment and prints the final state.\n"
    "The code is loaded at 0x100000 and runs at CPL 0 with identity-mapped paging over 64 MiB of RAM,\n"
    "RSP = 0x400000, until HLT, an exception, or the instruction limit (default 10000000).\n"
    "\n"
    "  --bits 32         flat 32-bit protected mode instead (paging off, CS/DS/SS base 0, 4 GiB limits;\n"
    "                    code at 0x100000, ESP = 0x400000)\n"
    "  --bits 16         real-address mode instead (code at 0x10000 as CS:IP = 1000:0000, other\n"
    "                    segments 0, SP = 0xFFF0)\n"
    "  --reg NAME=VALUE  initial value of rax..r15, rip, rflags, xmm0..xmm15, mxcsr, fcw or fsw\n"
    "                    (numbers in C syntax: 0x1f, 31, 037; xmm values as up to 32 hex digits)\n"
    "  --json            print one JSON object with every register as a hex string\n"
    "  --trace           print each executed instruction and the registers it changed\n"
    "  --max-insns N     stop after N instructions\n";

}  // namespace

int snippet_main(const std::vector<std::string>& args) {
    std::string file;
    std::vector<std::string> regs;
    bool json = false, trace = false;
    unsigned bits = 64;
    uint64_t max_insns = 10'000'000;
    for (size_t k = 0; k < args.size(); k++) {
        const std::string& a = args[k];
        auto value = [&](const char* opt) -> const std::string* {
            if (k + 1 >= args.size()) {
                fmt::print(stderr, "micro86 snippet: {} needs a value\n", opt);
                return nullptr;
            }
            return &args[++k];
        };
        if (a == "--reg") {
            const std::string* v = value("--reg");
            if (!v) return 2;
            regs.push_back(*v);
        } else if (a.rfind("--reg=", 0) == 0) {
            regs.push_back(a.substr(6));
        } else if (a == "--bits") {
            const std::string* v = value("--bits");
            if (!v) return 2;
            if (*v != "16" && *v != "32" && *v != "64") {
                fmt::print(stderr, "micro86 snippet: --bits: expected 16, 32 or 64, got '{}'\n", *v);
                return 2;
            }
            bits = unsigned(std::stoul(*v));
        } else if (a == "--json") {
            json = true;
        } else if (a == "--trace") {
            trace = true;
        } else if (a == "--max-insns") {
            const std::string* v = value("--max-insns");
            if (!v) return 2;
            char* end = nullptr;
            max_insns = std::strtoull(v->c_str(), &end, 0);
            if (!end || *end || v->empty() || max_insns == 0) {
                fmt::print(stderr, "micro86 snippet: --max-insns: '{}' is not a positive number\n", *v);
                return 2;
            }
        } else if (a == "--help" || a == "-h") {
            fmt::print("{}", kUsage);
            return 0;
        } else if (a.size() > 1 && a[0] == '-') {
            fmt::print(stderr, "micro86 snippet: unknown option '{}'\n{}", a, kUsage);
            return 2;
        } else if (file.empty()) {
            file = a;
        } else {
            fmt::print(stderr, "micro86 snippet: more than one FILE given ('{}' and '{}')\n", file, a);
            return 2;
        }
    }
    if (file.empty()) {
        fmt::print(stderr, "micro86 snippet: no FILE given\n{}", kUsage);
        return 2;
    }
    std::vector<uint8_t> code;
    std::string err;
    if (!host::read_file(file, code, err)) {
        fmt::print(stderr, "micro86 snippet: cannot read '{}': {}\n", file, err);
        return 1;
    }
    if (code.empty()) {
        fmt::print(stderr, "micro86 snippet: '{}' is empty\n", file);
        return 1;
    }
    SnippetEnv env;
    env.set_bits(bits);
    if (code.size() > SnippetEnv::kStackTop - SnippetEnv::kCodeBase - 0x10000) {
        fmt::print(stderr, "micro86 snippet: '{}' is too large ({} bytes; at most {})\n", file, code.size(),
                   SnippetEnv::kStackTop - SnippetEnv::kCodeBase - 0x10000);
        return 1;
    }
    if (bits == 16 && code.size() > 0x10000) {
        fmt::print(stderr, "micro86 snippet: '{}' is too large for --bits 16 ({} bytes; at most 65536)\n", file,
                   code.size());
        return 1;
    }
    env.load_code(code);
    CpuState& s = env.cpu().s;
    for (const auto& r : regs) {
        std::string e = set_register(s, r);
        if (!e.empty()) {
            fmt::print(stderr, "micro86 snippet: {}\n", e);
            return 2;
        }
    }
    env.cpu().update_mode();

    StopReason why = StopReason::Limit;
    if (!trace) {
        why = env.run(max_insns);
    } else {
        for (uint64_t n = 0; n < max_insns; n++) {
            CpuState before = s;
            uint8_t bytes[15] = {};
            uint64_t rip = s.rip;
            uint64_t at = bits == 64 ? rip : uint32_t(s.seg[CS].base + rip);
            for (int b = 0; b < 15; b++) env.peek(at + b, &bytes[b], 1);
            std::string text = disassemble(bytes, 15, env.cpu().mode(), rip);
            why = env.run(1);
            fmt::print("{:016x}  {:<40}{}\n", rip, text, why == StopReason::Exception ? "  (faulted)" : state_diff(before, s));
            if (why != StopReason::Limit) break;
        }
    }
    if (json)
        print_json(s, why, env.cpu().last_fault);
    else
        print_text(s, why, env.cpu().last_fault, env.cpu().icount);
    return 0;
}

}  // namespace m86::machine
