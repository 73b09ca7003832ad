#pragma once
// What a SEARCH query asks of a text beyond Xapian's terms (PROTOCOL 8.6).
// Xapian indexes Chinese, Japanese and Korean as single characters and
// pairs (FLAG_CJK_NGRAM) and answers a run of three or more characters by
// all of its pairs, wherever they stand; the rule is the run itself, side
// by side. So each hit is checked against the runs of the query.
//
// Pure functions; thread safe.

#include <string>
#include <string_view>
#include <vector>

namespace im::search {

// A code point that Xapian's n-gram tokenizer treats as CJK (its ranges in
// Xapian 1.4's CJK::codepoint_is_cjk: the CJK and Hangul blocks, kana,
// fullwidth forms and the supplementary ideograph planes).
bool is_cjk(char32_t cp);

// The runs of CJK word characters in `text` (UTF-8), in order, lowercased.
std::vector<std::string> cjk_runs(std::string_view text);

// `text` lowercased as Xapian's terms are.
std::string lowercase(std::string_view text);

// True when `text`, lowercased, holds each of `runs` as it is.
bool holds_runs(std::string_view text, const std::vector<std::string>& runs);

}  // namespace im::search
