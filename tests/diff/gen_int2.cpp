// Differential-test forms: int2. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_int2(std::vector<Form>&) {}

}  // namespace m86::difftest
