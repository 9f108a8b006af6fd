// Differential-test forms: x87. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_x87(std::vector<Form>&) {}

}  // namespace m86::difftest
