#include "imcli/line_editor.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <utility>

namespace im::cli {
namespace {

constexpr std::size_t kMaxHistory = 500;
constexpr std::size_t kMaxLine = 64 * 1024;

bool continuation(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// Code points in `s` (what the cursor moves over on the screen; wide CJK
// characters count one, close enough for a chat line).
std::size_t columns(const std::string& s) {
  return static_cast<std::size_t>(std::count_if(s.begin(), s.end(), [](char c) { return !continuation(c); }));
}

}  // namespace

std::optional<std::string> LineEditor::feed(char c) {
  if (!esc_.empty()) return escape(c);
  switch (c) {
    case '\r':
    case '\n': {
      std::string line = std::exchange(buf_, {});
      cur_ = 0;
      draft_.clear();
      if (!line.empty() && (history_.empty() || history_.back() != line)) {
        history_.push_back(line);
        if (history_.size() > kMaxHistory) history_.erase(history_.begin());
      }
      hist_pos_ = history_.size();
      return line;
    }
    case 0x1B:  // ESC: an arrow or another key's sequence follows
      esc_ = "\x1B";
      return std::nullopt;
    case 0x7F:  // backspace
    case 0x08:
      erase_before();
      return std::nullopt;
    case 0x01:  // ctrl-a
      cur_ = 0;
      return std::nullopt;
    case 0x05:  // ctrl-e
      cur_ = buf_.size();
      return std::nullopt;
    case 0x02:  // ctrl-b
      left();
      return std::nullopt;
    case 0x06:  // ctrl-f
      right();
      return std::nullopt;
    case 0x03:  // ctrl-c: quit (the terminal is raw, so it is no signal)
      eof_ = true;
      return std::nullopt;
    case 0x04:  // ctrl-d: end of input on an empty line, else delete
      if (buf_.empty()) eof_ = true;
      else erase_at();
      return std::nullopt;
    case 0x0B:  // ctrl-k
      buf_.erase(cur_);
      return std::nullopt;
    case 0x15:  // ctrl-u
      buf_.erase(0, cur_);
      cur_ = 0;
      return std::nullopt;
    case 0x17: {  // ctrl-w: the word before the cursor
      std::size_t start = cur_;
      while (start > 0 && buf_[start - 1] == ' ') --start;
      while (start > 0 && buf_[start - 1] != ' ') --start;
      buf_.erase(start, cur_ - start);
      cur_ = start;
      return std::nullopt;
    }
    case 0x10:  // ctrl-p
      recall(-1);
      return std::nullopt;
    case 0x0E:  // ctrl-n
      recall(+1);
      return std::nullopt;
    default:
      if (static_cast<unsigned char>(c) >= 0x20 || c == '\t') insert(c == '\t' ? ' ' : c);
      return std::nullopt;
  }
}

std::optional<std::string> LineEditor::escape(char c) {
  esc_ += c;
  if (esc_.size() == 2 && c != '[' && c != 'O') {
    esc_.clear();  // alt-key: ignored
    return std::nullopt;
  }
  if (esc_.size() < 3) return std::nullopt;
  const char last = esc_.back();
  if ((last >= '0' && last <= '9') || last == ';') {
    if (esc_.size() > 8) esc_.clear();  // not a sequence we know
    return std::nullopt;
  }
  const std::string seq = std::exchange(esc_, {});
  if (last == 'A') recall(-1);
  else if (last == 'B') recall(+1);
  else if (last == 'C') right();
  else if (last == 'D') left();
  else if (last == 'H' || seq == "\x1B[1~") cur_ = 0;
  else if (last == 'F' || seq == "\x1B[4~") cur_ = buf_.size();
  else if (seq == "\x1B[3~") erase_at();
  return std::nullopt;
}

void LineEditor::insert(char c) {
  if (buf_.size() >= kMaxLine) return;
  buf_.insert(buf_.begin() + static_cast<std::ptrdiff_t>(cur_), c);
  ++cur_;
  // Inside a UTF-8 sequence being typed the cursor stays after its bytes.
}

void LineEditor::left() {
  if (cur_ == 0) return;
  --cur_;
  while (cur_ > 0 && continuation(buf_[cur_])) --cur_;
}

void LineEditor::right() {
  if (cur_ >= buf_.size()) return;
  ++cur_;
  while (cur_ < buf_.size() && continuation(buf_[cur_])) ++cur_;
}

void LineEditor::erase_before() {
  if (cur_ == 0) return;
  const std::size_t end = cur_;
  left();
  buf_.erase(cur_, end - cur_);
}

void LineEditor::erase_at() {
  if (cur_ >= buf_.size()) return;
  const std::size_t start = cur_;
  right();
  buf_.erase(start, cur_ - start);
  cur_ = start;
}

void LineEditor::recall(int step) {
  if (history_.empty()) return;
  if (hist_pos_ == history_.size()) draft_ = buf_;
  if (step < 0 && hist_pos_ > 0) --hist_pos_;
  else if (step > 0 && hist_pos_ < history_.size()) ++hist_pos_;
  else return;
  buf_ = hist_pos_ == history_.size() ? draft_ : history_[hist_pos_];
  cur_ = buf_.size();
}

std::string LineEditor::render() const {
  // The columns the line may use: the terminal's last one is left free, as
  // writing there wraps on some terminals.
  const std::size_t prompt_cols = columns(prompt_);
  const std::size_t room = width_ > prompt_cols + 1 ? width_ - prompt_cols - 1 : 0;
  std::size_t from = 0, to = buf_.size();
  if (width_ != 0 && room > 0 && columns(buf_) > room) {
    // Scrolled so that the cursor shows, with a little of what is before it.
    const std::size_t keep_before = std::min(columns(buf_.substr(0, cur_)), room - std::min(room, room / 4 + 1));
    from = cur_;
    for (std::size_t n = 0; n < keep_before && from > 0; ++n) {
      do --from;
      while (from > 0 && continuation(buf_[from]));
    }
    to = from;
    for (std::size_t n = 0; n < room && to < buf_.size(); ++n) {
      do ++to;
      while (to < buf_.size() && continuation(buf_[to]));
    }
  }
  std::string out = "\r\x1B[K" + prompt_ + buf_.substr(from, to - from);
  const std::size_t back = columns(buf_.substr(cur_, to - std::min(to, cur_)));
  if (back > 0) out += "\x1B[" + std::to_string(back) + "D";
  return out;
}

std::size_t terminal_columns(int fd) {
  winsize ws{};
  return ::ioctl(fd, TIOCGWINSZ, &ws) == 0 ? ws.ws_col : 0;
}

std::string LineEditor::print_above(const std::string& text) const {
  std::string out = "\r\x1B[K";
  for (char c : text) out += c == '\n' ? std::string("\r\n") : std::string(1, c);
  if (text.empty() || text.back() != '\n') out += "\r\n";
  return out + render();
}

namespace {
// The settings to put back at exit, however the process exits (std::exit
// from anywhere): a shell left without echo is worse than a lost line.
int g_raw_fd = -1;
termios g_saved{};
void restore_at_exit() {
  if (g_raw_fd >= 0) ::tcsetattr(g_raw_fd, TCSANOW, &g_saved);
}
}  // namespace

RawTerminal::RawTerminal(int fd) : fd_(fd) {
  if (!::isatty(fd_) || ::tcgetattr(fd_, &saved_) != 0) return;
  g_raw_fd = fd_;
  g_saved = saved_;
  static const bool registered = std::atexit(restore_at_exit) == 0;
  (void)registered;
  termios raw = saved_;
  raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO | IEXTEN | ISIG);
  raw.c_iflag &= ~static_cast<tcflag_t>(IXON | ICRNL);
  raw.c_cc[VMIN] = 1;
  raw.c_cc[VTIME] = 0;
  active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
}

RawTerminal::~RawTerminal() {
  if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  g_raw_fd = -1;
}

}  // namespace im::cli
