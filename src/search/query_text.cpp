#include "search/query_text.h"

#include <xapian.h>

namespace im::search {

bool is_cjk(char32_t p) {
  return (p >= 0x2E80 && p <= 0x2EFF) || (p >= 0x3000 && p <= 0x9FFF) || (p >= 0xA700 && p <= 0xA71F) ||
         (p >= 0xAC00 && p <= 0xD7AF) || (p >= 0xF900 && p <= 0xFAFF) || (p >= 0xFE30 && p <= 0xFE4F) ||
         (p >= 0xFF00 && p <= 0xFFEF) || (p >= 0x20000 && p <= 0x2A6DF) || (p >= 0x2F800 && p <= 0x2FA1F);
}

std::vector<std::string> cjk_runs(std::string_view text) {
  std::vector<std::string> runs;
  std::string run;
  for (Xapian::Utf8Iterator it(text.data(), text.size()); it != Xapian::Utf8Iterator(); ++it) {
    const unsigned cp = *it;
    // As Xapian's tokenizer: a CJK word character continues a run (CJK
    // punctuation ends it), lowercased as the terms are.
    if (is_cjk(cp) && Xapian::Unicode::is_wordchar(cp)) {
      Xapian::Unicode::append_utf8(run, Xapian::Unicode::tolower(cp));
    } else if (!run.empty()) {
      runs.push_back(std::move(run));
      run.clear();
    }
  }
  if (!run.empty()) runs.push_back(std::move(run));
  return runs;
}

std::string lowercase(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (Xapian::Utf8Iterator it(text.data(), text.size()); it != Xapian::Utf8Iterator(); ++it)
    Xapian::Unicode::append_utf8(out, Xapian::Unicode::tolower(*it));
  return out;
}

bool holds_runs(std::string_view text, const std::vector<std::string>& runs) {
  if (runs.empty()) return true;
  const std::string lower = lowercase(text);
  for (const auto& run : runs)
    if (lower.find(run) == std::string::npos) return false;
  return true;
}

}  // namespace im::search
