#include <algorithm>
#include <catch2/catch.hpp>

#include "search/query_text.h"

using namespace im::search;

TEST_CASE("cjk_runs: runs of CJK word characters, lowercased, broken by other scripts, spaces and CJK punctuation") {
  CHECK(cjk_runs("明天下午开会讨论预算") == std::vector<std::string>{"明天下午开会讨论预算"});
  CHECK(cjk_runs("hello 开会 world 讨论预算!") == std::vector<std::string>{"开会", "讨论预算"});
  CHECK(cjk_runs("開会。讨论") == std::vector<std::string>{"開会", "讨论"});
  CHECK(cjk_runs("東京で会議 회의를") == std::vector<std::string>{"東京で会議", "회의를"});
  CHECK(cjk_runs("ＡＢ") == std::vector<std::string>{"ａｂ"});  // fullwidth forms, lowercased as Xapian does
  CHECK(cjk_runs("plain text").empty());
  CHECK(cjk_runs("").empty());
  CHECK(cjk_runs("𠀀𠀁") == std::vector<std::string>{"𠀀𠀁"});  // the supplementary ideographs
}

TEST_CASE("holds_runs: each run as it is, side by side, case folded") {
  const std::string text = "明天下午开会讨论预算";
  CHECK(holds_runs(text, {}));
  CHECK(holds_runs(text, {"开会"}));
  CHECK(holds_runs(text, {"讨论预算", "会讨"}));
  CHECK_FALSE(holds_runs(text, {"算明"}));
  CHECK_FALSE(holds_runs("讨论一下，论预测，预算", {"讨论预算"}));
  CHECK(holds_runs("ＡＢＣ", cjk_runs("ａｂ")));
  CHECK(lowercase("Hello ÀÉ") == "hello àé");
}

TEST_CASE("prefix_terms: P and each of a word's first 1 to kPrefixMaxChars characters, none for CJK") {
  CHECK(prefix_terms("budget") == std::vector<std::string>{"Pb", "Pbu", "Pbud", "Pbudg", "Pbudge", "Pbudget"});
  CHECK(prefix_terms("internationalization").size() == kPrefixMaxChars);
  CHECK(prefix_terms("internationalization").back() == "Pinternat");
  CHECK(prefix_terms("größe") ==
        std::vector<std::string>{"Pg", "Pgr", "Pgrö", "Pgröß", "Pgröße"});  // characters, not bytes
  CHECK(prefix_terms("开会").empty());
  CHECK(prefix_terms("").empty());
  CHECK(prefix_term("internationalization") == "Pinternat");
  CHECK(prefix_term("bud") == "Pbud");
}

TEST_CASE("split_query: the words before a * as TermGenerator splits them, the last a prefix, lowercased") {
  auto q = split_query("Budg* review");
  CHECK(q.prefixes == std::vector<std::string>{"budg"});
  CHECK(q.terms.empty());
  CHECK(q.words.find("review") != std::string::npos);
  CHECK(q.words.find("udg") == std::string::npos);
  CHECK(q.words.find('*') == std::string::npos);
  // Kept whole, as the index keeps them.
  CHECK(split_query("don't*").prefixes == std::vector<std::string>{"don't"});
  CHECK(split_query("AT&T*").prefixes == std::vector<std::string>{"at&t"});
  CHECK(split_query("3.14*").prefixes == std::vector<std::string>{"3.14"});
  CHECK(split_query("1,0*").prefixes == std::vector<std::string>{"1,0"});
  // Split, as the index splits them: the words before the last are terms.
  q = split_query("re-Arr*");
  CHECK(q.prefixes == std::vector<std::string>{"arr"});
  CHECK(q.terms == std::vector<std::string>{"re"});
  // After CJK, or after nothing: no prefix.
  q = split_query("开会* * x**");
  CHECK(q.prefixes == std::vector<std::string>{"x"});
  CHECK(q.terms == std::vector<std::string>{"开", "会"});  // CJK characters (their run is checked on each hit)
  CHECK(split_query("plain words").prefixes.empty());
  CHECK(split_query("plain words").words == "plain words");
  // Runs end at spaces, tabs, newlines and another *.
  CHECK(split_query("a\tbc* d\nef*").prefixes == std::vector<std::string>{"bc", "ef"});
  CHECK(split_query("*foo").prefixes.empty());
  CHECK(split_query("foo*bar*").prefixes == std::vector<std::string>{"foo", "bar"});
  // CJK then Latin in one run: the characters as terms, the Latin word the prefix.
  q = split_query("中文abc*");
  CHECK(q.prefixes == std::vector<std::string>{"abc"});
  CHECK(q.terms == std::vector<std::string>{"中", "文"});
  // A word longer than the index keeps: a prefix that finds nothing, not none.
  const std::string huge(kMaxWordBytes + 10, 'z');
  CHECK(split_query("budget " + huge + "*").prefixes == std::vector<std::string>{huge});
}

TEST_CASE("words_of: TermGenerator's words in order, and is_long_prefix past kPrefixMaxChars characters") {
  CHECK(words_of("Don't e-mail AT&T") == std::vector<std::string>{"don't", "e", "mail", "at&t"});
  CHECK(words_of(std::string(150, 'a')).size() == 1);  // up to kMaxWordBytes, not TermGenerator's 64
  CHECK(words_of(std::string(kMaxWordBytes + 1, 'a')).empty());
  CHECK_FALSE(is_long_prefix("internat"));
  CHECK(is_long_prefix("internati"));
  CHECK_FALSE(is_long_prefix("größeabc"));  // characters, not bytes
}
