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
