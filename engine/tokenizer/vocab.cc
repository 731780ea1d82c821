#include "engine/tokenizer/vocab.h"

namespace conclave::engine {

uint32_t TokenTypeToAttr(int64_t token_type) {
  switch (token_type) {
    case 1: return kAttrNormal;
    case 2: return kAttrUnknown;
    case 3: return kAttrControl;
    case 4: return kAttrUserDefined;
    case 5: return kAttrUnused;
    case 6: return kAttrByte;
    default: return kAttrUndefined;
  }
}

}  // namespace conclave::engine
