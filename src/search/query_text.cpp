#include "search/query_text.h"

#include <algorithm>
#include <utility>

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

std::vector<std::string> words_of(std::string_view text) {
  Xapian::TermGenerator terms;
  terms.set_flags(Xapian::TermGenerator::FLAG_CJK_NGRAM);
  terms.set_max_word_length(kMaxWordBytes);
  Xapian::Document doc;
  terms.set_document(doc);
  terms.index_text(std::string(text));
  std::vector<std::pair<Xapian::termpos, std::string>> at;
  for (auto t = doc.termlist_begin(); t != doc.termlist_end(); ++t)
    for (auto p = t.positionlist_begin(); p != t.positionlist_end(); ++p) at.emplace_back(*p, *t);
  std::sort(at.begin(), at.end());
  std::vector<std::string> out;
  out.reserve(at.size());
  for (auto& [pos, word] : at) out.push_back(std::move(word));
  return out;
}

QueryParts split_query(std::string_view query) {
  QueryParts parts;
  std::size_t pos = 0;
  while (pos < query.size()) {
    const std::size_t star = query.find('*', pos);
    if (star == std::string_view::npos) {
      parts.words.append(query.substr(pos));
      break;
    }
    // The run before the `*`, back to a space (or an earlier `*`).
    std::size_t start = star;
    while (start > pos && query[start - 1] != ' ' && query[start - 1] != '\t' && query[start - 1] != '\n') --start;
    parts.words.append(query.substr(pos, start - pos));
    parts.words.push_back(' ');
    const std::string_view run = query.substr(start, star - start);
    std::vector<std::string> words = words_of(run);
    if (words.empty()) {
      // Word characters TermGenerator indexes nothing of (a word over
      // kMaxWordBytes): a prefix no document has, not no prefix at all.
      for (Xapian::Utf8Iterator it(run.data(), run.size()); it != Xapian::Utf8Iterator(); ++it)
        if (Xapian::Unicode::is_wordchar(*it) && !is_cjk(*it)) {
          parts.prefixes.push_back(lowercase(run));
          break;
        }
    } else {
      Xapian::Utf8Iterator first(words.back().data(), words.back().size());
      if (first != Xapian::Utf8Iterator() && !is_cjk(*first)) {
        parts.prefixes.push_back(std::move(words.back()));
        words.pop_back();
      }
      for (auto& w : words) parts.terms.push_back(std::move(w));
    }
    pos = star + 1;
  }
  return parts;
}

bool is_long_prefix(std::string_view prefix) {
  return chars_of(prefix) > kPrefixMaxChars;
}

}  // namespace im::search
