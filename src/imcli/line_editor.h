#pragma once
// The line editor of imcli's interactive mode: the keys people expect
// (left/right, home/end, backspace/delete, ctrl-a/e/u/k/w, up/down through
// the history), and lines printed above the one being typed without losing
// it. Small on purpose: Debian's libedit loses typed-ahead keys when lines
// arrive from another thread in its callback mode, and GNU readline is GPL.
//
// feed() is pure (bytes in, state out) so it is tested without a terminal;
// RawTerminal puts a tty into the mode it needs.

#include <termios.h>

#include <optional>
#include <string>
#include <vector>

namespace im::cli {

class LineEditor {
 public:
  explicit LineEditor(std::string prompt) : prompt_(std::move(prompt)) {}

  // One byte of input; a whole line when it was Enter (the line is added to
  // the history). `eof` is set by ctrl-d on an empty line and by ctrl-c.
  std::optional<std::string> feed(char c);
  bool eof() const { return eof_; }

  // The escape sequence that redraws the prompt and the line, the cursor at
  // its place. A line wider than the terminal scrolls sideways: the part
  // around the cursor is shown, on one screen row.
  std::string render() const;
  // The terminal's width in columns (0: unknown, nothing is cut).
  void set_width(std::size_t columns) { width_ = columns; }
  // What prints `text` (one or more lines) above the line being typed.
  std::string print_above(const std::string& text) const;

  void set_prompt(std::string p) { prompt_ = std::move(p); }
  const std::string& line() const { return buf_; }
  std::size_t cursor() const { return cur_; }
  const std::vector<std::string>& history() const { return history_; }

 private:
  void insert(char c);
  void left();
  void right();
  void erase_before();
  void erase_at();
  void recall(int step);  // up (-1) or down (+1) through the history
  std::optional<std::string> escape(char c);

  std::string prompt_;
  std::string buf_;
  std::size_t cur_ = 0;  // a byte offset, never inside a UTF-8 sequence
  std::vector<std::string> history_;
  std::size_t hist_pos_ = 0;  // == history_.size(): the line being typed
  std::string draft_;          // the line being typed while browsing the history
  std::string esc_;            // an escape sequence under way
  bool eof_ = false;
  std::size_t width_ = 0;
};

// The width of the terminal on `fd` in columns; 0 when it is not one.
std::size_t terminal_columns(int fd);

// Puts a terminal in raw mode (no echo, byte at a time, ctrl-c a key) for
// its lifetime; nothing when `fd` is not a terminal.
class RawTerminal {
 public:
  explicit RawTerminal(int fd);
  ~RawTerminal();
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  int fd_;
  bool active_ = false;
  termios saved_{};
};

}  // namespace im::cli
