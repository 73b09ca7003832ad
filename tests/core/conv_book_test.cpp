// ConvBook: the conversation states derived from inbox rows (PROTOCOL 8.1).

#include <catch2/catch.hpp>

#include "core/conv_book.h"
#include "store/conv_id.h"

using namespace im;
using namespace im::core;

namespace {

std::uint64_t next_inbox = 0;

ConvBook::Row msg(const std::string& from, const std::string& to, std::uint64_t conv_seq,
                  v1::ConvType type = v1::C2C, std::uint32_t content_type = 1) {
  ConvBook::Row r;
  r.inbox_seq = ++next_inbox;
  r.conv_type = type;
  r.from = from;
  r.to = to;
  r.conv_seq = conv_seq;
  r.content_type = content_type;
  r.time_ms = static_cast<std::int64_t>(1000 + next_inbox);
  return r;
}

template <class Body>
ConvBook::Row mark(std::uint32_t content_type, const Body& body) {
  ConvBook::Row r;
  r.inbox_seq = ++next_inbox;
  r.conv_type = v1::SYSTEM;
  r.content_type = content_type;
  r.body = body.SerializeAsString();
  return r;
}

// A 10006 mark of the C2C conversation with bob: `reader` read up to `seq`.
ConvBook::Row read_mark(const std::string& reader, std::uint64_t seq) {
  v1::ReadMark read;
  read.set_conv_type(v1::C2C);
  read.set_peer("bob");
  read.set_reader(reader);
  read.set_read_seq(seq);
  return mark(10006, read);
}

using Runs = std::vector<std::pair<std::uint64_t, std::uint64_t>>;

}  // namespace

TEST_CASE("ConvBook: unread runs add, merge, split and drop") {
  store::ConvRecord r;
  for (std::uint64_t s : {3, 4, 5, 9, 7, 8, 1}) ConvBook::add_unread(r, s);
  CHECK(r.unread == Runs{{1, 1}, {3, 5}, {7, 9}});
  ConvBook::add_unread(r, 2);
  CHECK(r.unread == Runs{{1, 5}, {7, 9}});
  ConvBook::add_unread(r, 4);  // counted once
  CHECK(ConvBook::unread_count(r) == 8);
  ConvBook::drop_unread(r, 3);
  CHECK(r.unread == Runs{{1, 2}, {4, 5}, {7, 9}});
  ConvBook::drop_unread(r, 9);
  ConvBook::drop_unread(r, 100);
  CHECK(r.unread == Runs{{1, 2}, {4, 5}, {7, 8}});
  ConvBook::drop_unread_upto(r, 4);
  CHECK(r.unread == Runs{{5, 5}, {7, 8}});
  ConvBook::drop_unread_upto(r, 8);
  CHECK(r.unread.empty());
}

TEST_CASE("ConvBook: own sends read, marks move read positions, settings and deletes, replays change nothing") {
  ConvBook book;
  const std::string conv = store::c2c_conv("me", "bob");
  std::vector<ConvBook::Row> rows = {msg("bob", "me", 1), msg("bob", "me", 2), msg("me", "bob", 3),
                                     msg("bob", "me", 4), msg("bob", "me", 5), msg("bob", "me", 6)};
  for (const auto& r : rows) book.apply("me", r);
  const store::ConvRecord* r = &book.find(conv)->rec;
  CHECK(r->read_seq == 3);
  CHECK(ConvBook::unread_count(*r) == 3);
  CHECK(r->last_conv_seq == 6);
  CHECK(r->first_conv_seq == 1);
  // Applying again (a replay after a crash) changes nothing.
  for (const auto& row : rows) book.apply("me", row);
  CHECK(ConvBook::unread_count(book.find(conv)->rec) == 3);

  book.apply("me", read_mark("me", 4));
  book.apply("me", read_mark("bob", 3));
  r = &book.find(conv)->rec;
  CHECK(r->read_seq == 4);
  CHECK(r->peer_read_seq == 6);  // bob's own message 6 counts as his reading: an older mark moves nothing
  CHECK(ConvBook::unread_count(*r) == 2);

  v1::MessageDelete del;
  del.set_conv_type(v1::C2C);
  del.set_peer("bob");
  del.add_conv_seqs(6);
  book.apply("me", mark(10007, del));
  CHECK(ConvBook::unread_count(book.find(conv)->rec) == 1);
  CHECK(book.find(conv)->rec.has_deletes);

  v1::ConvSettings s;
  s.set_conv_type(v1::C2C);
  s.set_peer("bob");
  s.set_muted(true);
  s.set_hidden(true);
  book.apply("me", mark(10008, s));
  CHECK(book.find(conv)->rec.muted);
  CHECK(book.find(conv)->rec.hidden);
  book.apply("me", msg("bob", "me", 7));  // a newer message unhides it
  CHECK_FALSE(book.find(conv)->rec.hidden);
  CHECK(book.find(conv)->rec.muted);
  CHECK(ConvBook::unread_count(book.find(conv)->rec) == 2);

  // Events and server content types do not count; a recall drops its target.
  const std::string g = store::group_conv("g");
  book.apply("me", msg("owner", "g", 1, v1::GROUP, 10001));
  book.apply("me", msg("ann", "g", 2, v1::GROUP));
  book.apply("me", msg("ann", "g", 3, v1::GROUP));
  v1::MessageRecall recall;
  recall.set_target_conv_seq(2);
  auto rc = msg("ann", "g", 4, v1::GROUP, 10003);
  rc.body = recall.SerializeAsString();
  book.apply("me", rc);
  CHECK(ConvBook::unread_count(book.find(g)->rec) == 1);
  CHECK(book.applied() == next_inbox);

  // The record survives its encoding.
  auto back = store::ConvRecord::decode(book.find(conv)->rec.encode());
  REQUIRE(back);
  CHECK(*back == book.find(conv)->rec);
  CHECK_FALSE(store::ConvRecord::decode("\x01short"));
}

TEST_CASE("ConvBook: the C2C peer's own messages move peer_read_seq, an older mark never moves it back") {
  ConvBook book;
  const std::string conv = store::c2c_conv("me", "bob");
  for (const auto& row : {msg("me", "bob", 1), msg("me", "bob", 2)}) book.apply("me", row);
  CHECK(book.find(conv)->rec.peer_read_seq == 0);
  book.apply("me", msg("bob", "me", 3));
  CHECK(book.find(conv)->rec.peer_read_seq == 3);
  book.apply("me", read_mark("bob", 2));
  CHECK(book.find(conv)->rec.peer_read_seq == 3);  // never back
}

TEST_CASE("ConvBook: a recalled message's tombstone moves read positions as the message did, never unread") {
  // An inbox row by reference reads as its history row now is: once the
  // message is recalled, as its 10005 tombstone.
  ConvBook book;
  const std::string conv = store::c2c_conv("me", "bob");
  book.apply("me", msg("bob", "me", 1));
  book.apply("me", msg("me", "bob", 2, v1::C2C, 10005));  // my recalled reply: sending counts as reading
  CHECK(book.find(conv)->rec.read_seq == 2);
  CHECK(book.find(conv)->rec.unread.empty());
  book.apply("me", msg("bob", "me", 3, v1::C2C, 10005));  // bob's recalled message
  CHECK(book.find(conv)->rec.peer_read_seq == 3);
  CHECK(book.find(conv)->rec.unread.empty());
  book.apply("me", msg("bob", "me", 4));
  CHECK(book.find(conv)->rec.unread == Runs{{4, 4}});
}

TEST_CASE("ConvBook: conversation ids from either side") {
  CHECK(conv_from_side("me", v1::C2C, "bob") == store::c2c_conv("bob", "me"));
  CHECK(peer_of("me", store::c2c_conv("bob", "me")) == "bob");
  CHECK(peer_of("me", store::c2c_conv("me", "me")) == "me");
  CHECK(peer_of("me", store::group_conv("g1")) == "g1");
  CHECK(peer_of("me", store::system_conv("me")).empty());
  CHECK(conv_type_of_id(store::group_conv("g1")) == v1::GROUP);
  CHECK(conv_from_side("me", v1::CONV_TYPE_UNSPECIFIED, "x").empty());
}
