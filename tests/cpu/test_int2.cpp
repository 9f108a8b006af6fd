// Unit tests: int2.
#include <doctest/doctest.h>
