// Differential-test forms: alu. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_alu(std::vector<Form>&) {}

}  // namespace m86::difftest
