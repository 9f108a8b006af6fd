// Unit tests: int1.
#include <doctest/doctest.h>
