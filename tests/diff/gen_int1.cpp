// Differential-test forms: int1. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_int1(std::vector<Form>&) {}

}  // namespace m86::difftest
