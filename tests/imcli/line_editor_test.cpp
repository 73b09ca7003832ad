// imcli's line editor, byte by byte, without a terminal.

#include <catch2/catch.hpp>

#include <string>

#include "imcli/line_editor.h"

using im::cli::LineEditor;

namespace {

// Feeds `keys`; the last whole line, if any.
std::optional<std::string> type(LineEditor& e, const std::string& keys) {
  std::optional<std::string> line;
  for (char c : keys)
    if (auto l = e.feed(c)) line = l;
  return line;
}

}  // namespace

TEST_CASE("line editor: typing, moving and erasing") {
  LineEditor e("> ");
  CHECK_FALSE(type(e, "helo"));
  type(e, "\x1B[D");  // left
  type(e, "l");
  CHECK(e.line() == "hello");
  CHECK(e.cursor() == 4);
  type(e, "\x01");  // ctrl-a
  type(e, "\x1B[3~");  // delete
  CHECK(e.line() == "ello");
  type(e, "\x05 world");  // ctrl-e
  CHECK(e.line() == "ello world");
  type(e, "\x17");  // ctrl-w
  CHECK(e.line() == "ello ");
  type(e, "\x7F\x7F");
  CHECK(e.line() == "ell");
  type(e, "\x01\x0B");  // ctrl-a, ctrl-k
  CHECK(e.line().empty());
  CHECK(type(e, "x\r") == std::string("x"));
  CHECK(e.line().empty());
  CHECK(e.cursor() == 0);
}

TEST_CASE("line editor: multi-byte characters move and erase whole") {
  LineEditor e("> ");
  type(e, "a\xE4\xBD\xA0\xE5\xA5\xBD");  // a 你好
  type(e, "\x1B[D");
  CHECK(e.cursor() == 4);
  type(e, "\x7F");  // erases 你, all three bytes
  CHECK(e.line() == "a\xE5\xA5\xBD");
  // The cursor is put back over one column for the one character after it.
  CHECK(e.render() == "\r\x1B[K> a\xE5\xA5\xBD\x1B[1D");
}

TEST_CASE("line editor: history with up and down keeps the draft") {
  LineEditor e("> ");
  type(e, "one\r");
  type(e, "two\r");
  type(e, "two\r");  // a repeat is kept once
  CHECK(e.history().size() == 2);
  type(e, "dra");
  type(e, "\x1B[A");
  CHECK(e.line() == "two");
  type(e, "\x1B[A\x1B[A");
  CHECK(e.line() == "one");
  type(e, "\x1B[B\x1B[B");
  CHECK(e.line() == "dra");
  CHECK(type(e, "ft\r") == std::string("draft"));
}

TEST_CASE("line editor: ctrl-d on an empty line and ctrl-c end the input, unknown sequences are ignored") {
  LineEditor e("> ");
  type(e, "ab\x04");  // ctrl-d with text: no end
  CHECK_FALSE(e.eof());
  type(e, "\x1B[99;5X\x1Bz");  // a sequence it does not know, an alt-key
  CHECK(e.line() == "ab");
  type(e, "\x15\x04");
  CHECK(e.eof());
  LineEditor c("> ");
  type(c, "\x03");
  CHECK(c.eof());
}

TEST_CASE("line editor: a line printed above the one being typed comes back with it") {
  LineEditor e("me> ");
  type(e, "half");
  CHECK(e.print_above("[bob] hi\nthere") == "\r\x1B[K[bob] hi\r\nthere\r\n\r\x1B[Kme> half");
}

TEST_CASE("line editor: a line wider than the terminal scrolls sideways and keeps the cursor on screen") {
  LineEditor e("> ");
  e.set_width(12);  // 9 columns for the line: the prompt takes 2, the last column stays free
  type(e, "abcdefghijklmnopqrstuvwxyz");
  // The end of the line, with 6 characters before the cursor.
  CHECK(e.render() == "\r\x1B[K> uvwxyz");
  type(e, "\x01");  // ctrl-a: home
  CHECK(e.render() == "\r\x1B[K> abcdefghi\x1B[9D");
  type(e, "\x1B[C\x1B[C");  // two right: the start still shows
  CHECK(e.render() == "\r\x1B[K> abcdefghi\x1B[7D");
  // Multi-byte characters are never cut in half.
  LineEditor w("> ");
  w.set_width(6);                                               // 3 columns
  type(w, "\xE4\xBD\xA0\xE5\xA5\xBD\xE4\xBD\xA0\xE5\xA5\xBD");  // 你好你好
  CHECK(w.render() == "\r\x1B[K> \xE4\xBD\xA0\xE5\xA5\xBD");    // two before the cursor, whole
  type(w, "\x1B[D");
  CHECK(w.render() == "\r\x1B[K> \xE5\xA5\xBD\xE4\xBD\xA0\xE5\xA5\xBD\x1B[1D");
  // Unknown width: nothing is cut.
  LineEditor u("> ");
  type(u, "abcdefghijklmnopqrstuvwxyz");
  CHECK(u.render() == "\r\x1B[K> abcdefghijklmnopqrstuvwxyz");
}
