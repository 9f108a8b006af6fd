// Differential-test forms: sse. (See harness.h.)
#include "diff/harness.h"

namespace m86::difftest {

void forms_sse(std::vector<Form>&) {}

}  // namespace m86::difftest
