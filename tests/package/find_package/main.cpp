#include <paci/paci.hpp>

int main() { return paci::action{} == paci::action{} ? 0 : 1; }
