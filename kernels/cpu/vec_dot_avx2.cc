#include "kernels/cpu/vec_dot.h"

namespace conclave::kernels::cpu {

VecDotFn GetVecDotAvx2(GgmlType wtype) { return nullptr; }

}  // namespace conclave::kernels::cpu
