// Differential test runner: every generator's forms against the host CPU (see harness.h).
//
// Environment:
//   M86_SEED=n           base seed (default 1); each case's inputs derive from seed, form name, case
//   M86_DIFF_CASES=n     cases per form (default 2000; forms may fix their own count)
//   M86_DIFF_FILTER=s    run only forms whose name contains s
//   M86_DIFF_VERBOSE=1   one progress line per form (name, cases, failures, time)
//   M86_DIFF_CASE=i      run only case i of each selected form (to reproduce a reported mismatch)
//   M86_DIFF_REPORTS=n   mismatches printed per form (default 3; all are counted)
//   M86_DIFF_DUMP=n      print the disassembly of each form's first n instances (for generator authors)
//   M86_DIFF_SELFTEST=1  proves the harness can fail: corrupts every 7th emulator result on purpose (a
//                        register bit, a compared flag, a data byte, RIP, the exception, XMM/x87, the
//                        stack) and checks each corruption is detected; flips undefined flags and checks
//                        that is ignored; runs a native child that exits and one that hangs and checks
//                        both are reported. Exit status 0 only if all of that holds (and nothing else
//                        failed).
//
// Output: mismatch reports, then "diff: <cases> cases run ..." and the summary line
// "diff: N passed, M failed" (N, M count forms). Exit status 1 on any failure.
#include <cstdlib>

#include "diff/harness.h"

int main() {
    using namespace m86::difftest;
    std::vector<Form> forms;
    forms_alu(forms);
    forms_int1(forms);
    forms_int2(forms);
    forms_string(forms);
    forms_x87(forms);
    forms_sse(forms);
    forms_system(forms);
    RunOptions opt;
    auto env = [](const char* name) -> const char* {
        const char* s = std::getenv(name);
        return s && *s ? s : nullptr;
    };
    if (const char* s = env("M86_SEED")) opt.seed = std::strtoull(s, nullptr, 0);
    if (const char* s = env("M86_DIFF_CASES")) opt.cases = std::atoi(s);
    if (const char* s = env("M86_DIFF_FILTER")) opt.filter = s;
    if (const char* s = env("M86_DIFF_VERBOSE")) opt.verbose = std::atoi(s) != 0;
    if (const char* s = env("M86_DIFF_CASE")) opt.only_case = std::atoi(s);
    if (const char* s = env("M86_DIFF_REPORTS")) opt.max_reports = std::atoi(s);
    if (const char* s = env("M86_DIFF_DUMP")) opt.dump = std::atoi(s);
    if (const char* s = env("M86_DIFF_JIT")) opt.jit = std::atoi(s) != 0;
    if (const char* s = env("M86_DIFF_SELFTEST")) opt.selftest = std::atoi(s) != 0;
    return run_forms(forms, opt) == 0 ? 0 : 1;
}
