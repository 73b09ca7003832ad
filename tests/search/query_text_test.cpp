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

TEST_CASE("split_query: the word characters before a * are a prefix, lowercased; the rest is text") {
  auto q = split_query("Budg* review");
  CHECK(q.words == "  review");
  CHECK(q.prefixes == std::vector<std::string>{"budg"});
  q = split_query("re-Arr* 开会* *  x**");
  CHECK(q.prefixes == std::vector<std::string>{"arr", "x"});
  // The text keeps re- and 开会 (a CJK run is no prefix); no * and no prefix is left in it.
  CHECK(q.words.find("re-") != std::string::npos);
  CHECK(q.words.find("开会") != std::string::npos);
  CHECK(q.words.find('*') == std::string::npos);
  CHECK(q.words.find("arr") == std::string::npos);
  CHECK(split_query("plain words").prefixes.empty());
  CHECK(split_query("plain words").words == "plain words");
}

TEST_CASE("holds_prefixes: a word starting with each prefix longer than the indexed ones, case folded") {
  CHECK(holds_prefixes("The Internationalization plan", {"internationa"}));
  CHECK_FALSE(holds_prefixes("re-internationalization", {"nternational"}));  // not at a word's start
  CHECK(holds_prefixes("re-internationalization", {"internationali"}));      // after a hyphen: a word's start
  CHECK_FALSE(holds_prefixes("international", {"internationalize"}));
  CHECK(holds_prefixes("anything", {"bud", "x"}));  // short ones are terms of the index: not checked here
  CHECK(holds_prefixes("anything", {}));
}
