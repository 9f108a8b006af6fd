// Differential-test forms: string. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_string(std::vector<Form>&) {}

}  // namespace m86::difftest
