#pragma once
// What a SEARCH query asks of a text beyond Xapian's terms (PROTOCOL 8.6).
// Xapian indexes Chinese, Japanese and Korean as single characters and
// pairs (FLAG_CJK_NGRAM) and answers a run of three or more characters by
// all of its pairs, wherever they stand; the rule is the run itself, side
// by side. So each hit is checked against the runs of the query.
//
// A word ending in `*` is a prefix. Xapian's own wildcards expand over the
// words of the whole index, every user's: a bound on that expansion would
// answer differently depending on what others wrote (a yes/no oracle on
// their texts), and no bound is no bound. So each indexed word (not CJK)
// also gets a term "P" + each of its first 1 to kPrefixMaxChars
// characters, and `budg*` is the one term "Pbudg", filtered to the
// caller's conversations like any other. A longer prefix is looked up by
// its first kPrefixMaxChars characters and the rest checked against each
// hit's own terms (SearchIndex::find).
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

// The characters of a word whose prefixes are indexed.
inline constexpr std::size_t kPrefixMaxChars = 8;

// The prefix terms of an indexed word term (lowercased, as TermGenerator
// makes them): "P" + its first 1 .. kPrefixMaxChars characters; none for a
// CJK term.
std::vector<std::string> prefix_terms(std::string_view term);
// The term a query's prefix (lowercased) is looked up by.
std::string prefix_term(std::string_view prefix);

// A query split for the index: the text QueryParser takes, the exact
// terms and the prefixes. A `*` ends a prefix: the run of characters
// before it up to a space is split into words as TermGenerator splits
// text (so `don't*`, `AT&T*`, `3.14*` and `re-arr*` mean what the index
// holds: "don't", "at&t", "3.14", and "re" then "arr"); its last word
// (not CJK) is the prefix and the others are terms the hit must hold. A
// `*` after CJK text or after nothing is dropped.
struct QueryParts {
  std::string words;
  std::vector<std::string> terms;
  std::vector<std::string> prefixes;
};
QueryParts split_query(std::string_view query);

// Whether `prefix` is longer than its index term (kPrefixMaxChars): then
// each hit is checked for a term of its own starting with it.
bool is_long_prefix(std::string_view prefix);

// The words TermGenerator (FLAG_CJK_NGRAM) makes of `text`, lowercased, in
// order (CJK as single characters: its pairs have no position).
std::vector<std::string> words_of(std::string_view text);

// The longest word TermGenerator indexes, in bytes (its default is 64).
inline constexpr unsigned kMaxWordBytes = 200;

}  // namespace im::search
