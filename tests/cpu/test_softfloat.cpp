// Unit tests: softfloat.
#include <doctest/doctest.h>
