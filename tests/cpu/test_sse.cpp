// Unit tests: sse.
#include <doctest/doctest.h>
