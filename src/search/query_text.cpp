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

namespace {

std::size_t chars_of(std::string_view s) {
  std::size_t n = 0;
  for (Xapian::Utf8Iterator it(s.data(), s.size()); it != Xapian::Utf8Iterator(); ++it) ++n;
  return n;
}

// `s` up to its n-th character.
std::string_view first_chars(std::string_view s, std::size_t n) {
  Xapian::Utf8Iterator it(s.data(), s.size());
  for (std::size_t i = 0; i < n && it != Xapian::Utf8Iterator(); ++i) ++it;
  return s.substr(0, static_cast<std::size_t>(it.raw() - s.data()));
}

}  // namespace

std::vector<std::string> prefix_terms(std::string_view term) {
  std::vector<std::string> out;
  Xapian::Utf8Iterator it(term.data(), term.size());
  if (it == Xapian::Utf8Iterator() || is_cjk(*it)) return out;
  for (std::size_t n = 0; n < kPrefixMaxChars && it != Xapian::Utf8Iterator(); ++n) {
    ++it;
    std::string t = "P";
    t.append(term.data(), static_cast<std::size_t>(it.raw() - term.data()));
    out.push_back(std::move(t));
  }
  return out;
}

std::string prefix_term(std::string_view prefix) {
  std::string t = "P";
  t.append(first_chars(prefix, kPrefixMaxChars));
  return t;
}

QueryParts split_query(std::string_view query) {
  QueryParts parts;
  std::size_t word_start = std::string::npos;  // of the run of word characters `words` ends with
  for (Xapian::Utf8Iterator it(query.data(), query.size()); it != Xapian::Utf8Iterator(); ++it) {
    const unsigned cp = *it;
    if (cp == '*') {
      if (word_start != std::string::npos) {
        parts.prefixes.push_back(lowercase(std::string_view(parts.words).substr(word_start)));
        parts.words.resize(word_start);
      }
      parts.words.push_back(' ');
      word_start = std::string::npos;
      continue;
    }
    if (Xapian::Unicode::is_wordchar(cp) && !is_cjk(cp)) {
      if (word_start == std::string::npos) word_start = parts.words.size();
    } else {
      word_start = std::string::npos;
    }
    Xapian::Unicode::append_utf8(parts.words, cp);
  }
  return parts;
}

bool holds_prefixes(std::string_view text, const std::vector<std::string>& prefixes) {
  std::string lower;
  for (const auto& prefix : prefixes) {
    if (chars_of(prefix) <= kPrefixMaxChars) continue;
    if (lower.empty()) lower = lowercase(text);
    bool found = false;
    bool in_word = false;
    for (Xapian::Utf8Iterator it(lower.data(), lower.size()); it != Xapian::Utf8Iterator() && !found; ++it) {
      const bool word = Xapian::Unicode::is_wordchar(*it);
      if (word && !in_word)
        found = std::string_view(lower).substr(static_cast<std::size_t>(it.raw() - lower.data())).starts_with(prefix);
      in_word = word;
    }
    if (!found) return false;
  }
  return true;
}

}  // namespace im::search
