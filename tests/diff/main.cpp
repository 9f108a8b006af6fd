// Differential test runner (harness.h). Environment: M86_SEED, M86_DIFF_CASES, M86_DIFF_FILTER.
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
    RunOptions opt;
    if (const char* s = std::getenv("M86_SEED")) opt.seed = std::strtoull(s, nullptr, 0);
    if (const char* s = std::getenv("M86_DIFF_CASES")) opt.cases = std::atoi(s);
    if (const char* s = std::getenv("M86_DIFF_FILTER")) opt.filter = s;
    return run_forms(forms, opt) == 0 ? 0 : 1;
}
