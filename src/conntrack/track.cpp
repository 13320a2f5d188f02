// Per-protocol tracking as Linux 6.1's netfilter does it: the TCP state table
// of nf_conntrack_proto_tcp.c (with window tracking off, as with
// nf_conntrack_tcp_no_window_check, but every state transition and INVALID
// verdict of the table kept), UDP's unreplied/stream timeouts
// (nf_conntrack_proto_udp.c), ICMP queries (nf_conntrack_proto_icmp.c) and
// the generic tracker for everything else.
#include "dpgate/conntrack/table.hpp"
#include "dpgate/conntrack/track.hpp"

namespace dpgate::conntrack {

namespace {

using Kind = TcpStep::Kind;
constexpr TcpStep to(TcpState s) { return {Kind::kState, s}; }
constexpr TcpStep IV{Kind::kInvalid, TcpState::kNone};
constexpr TcpStep IG{Kind::kIgnore, TcpState::kNone};
constexpr TcpStep SS = to(TcpState::kSynSent);
constexpr TcpStep SR = to(TcpState::kSynRecv);
constexpr TcpStep ES = to(TcpState::kEstablished);
constexpr TcpStep FW = to(TcpState::kFinWait);
constexpr TcpStep CW = to(TcpState::kCloseWait);
constexpr TcpStep LA = to(TcpState::kLastAck);
constexpr TcpStep TW = to(TcpState::kTimeWait);
constexpr TcpStep CL = to(TcpState::kClose);
constexpr TcpStep S2 = to(TcpState::kSynSent2);

// tcp_conntracks[dir][flag class][state]. Columns are the current state:
// NONE, SYN_SENT, SYN_RECV, ESTABLISHED, FIN_WAIT, CLOSE_WAIT, LAST_ACK,
// TIME_WAIT, CLOSE, SYN_SENT2. The kernel's comments explain each cell;
// the notable ones are repeated here.
constexpr TcpStep kTcpTable[2][kTcpFlagClassCount][kTcpStateCount] = {
    {
        // ORIGINAL
        // SYN: opens (NONE), retransmits (SYN_SENT), reopens after
        // TIME_WAIT/CLOSE; inside a live connection it is ignored (the
        // receiver will answer with RST or a challenge ACK).
        {SS, SS, IG, IG, IG, IG, IG, SS, SS, S2},
        // SYN/ACK from the client: only in simultaneous open.
        {IV, IV, SR, IV, IV, IV, IV, IV, IV, SR},
        // FIN: not before the SYN/ACK has been seen.
        {IV, IV, FW, FW, LA, LA, LA, TW, CL, IV},
        // ACK: NONE -> ESTABLISHED is the loose pickup; in SYN_SENT the
        // client cannot ACK what it has not received.
        {ES, IV, ES, ES, CW, CW, TW, TW, CL, IV},
        // RST
        {IV, CL, CL, CL, CL, CL, CL, CL, CL, CL},
        // no SYN, FIN, ACK or RST
        {IV, IV, IV, IV, IV, IV, IV, IV, IV, IV},
    },
    {
        // REPLY
        // SYN from the server: simultaneous open, or a reopen from TIME_WAIT.
        {IV, S2, IV, IV, IV, IV, IV, SS, IV, S2},
        // SYN/ACK: the normal answer in SYN_SENT; later ones are ignored.
        {IV, SR, IG, IG, IG, IG, IG, IG, IG, SR},
        {IV, IV, FW, FW, LA, LA, LA, TW, CL, IV},
        // ACK in SYN_SENT may be a half-open connection: ignored.
        {IV, IG, SR, ES, CW, CW, TW, TW, CL, IG},
        {IV, CL, CL, CL, CL, CL, CL, CL, CL, CL},
        {IV, IV, IV, IV, IV, IV, IV, IV, IV, IV},
    },
};

// segment_seq_plus_len(): where a segment ends in sequence space.
uint32_t segment_end(const L4Info& p) {
  return p.tcp_seq + p.l4_payload_len + ((p.tcp_flags & kTcpSyn) ? 1 : 0) +
         ((p.tcp_flags & kTcpFin) ? 1 : 0);
}

}  // namespace

bool tcp_flags_valid(uint8_t flags) {
  switch (flags & kTcpClassFlags) {
    case kTcpSyn:
    case kTcpSyn | kTcpUrg:
    case kTcpSyn | kTcpAck:
    case kTcpRst:
    case kTcpRst | kTcpAck:
    case kTcpFin | kTcpAck:
    case kTcpFin | kTcpAck | kTcpUrg:
    case kTcpAck:
    case kTcpAck | kTcpUrg:
      return true;
    default:
      return false;
  }
}

TcpStep tcp_transition(Direction dir, TcpFlagClass cls, TcpState from) {
  return kTcpTable[static_cast<unsigned>(dir)][static_cast<unsigned>(cls)]
                  [static_cast<unsigned>(from)];
}

bool may_start_flow(const net::FiveTuple& t, const L4Info& p, const Timeouts& timeouts) {
  switch (t.proto) {
    case 6: {
      // tcp_error() then tcp_new(): the NONE column of the ORIGINAL table.
      if (!tcp_flags_valid(p.tcp_flags)) return false;
      const TcpStep s = tcp_transition(Direction::kOriginal, tcp_flag_class(p.tcp_flags),
                                       TcpState::kNone);
      if (s.kind != Kind::kState) return false;
      return s.state == TcpState::kSynSent || timeouts.tcp_loose;
    }
    case 1:
      return icmp_reply_type(p.icmp_type) != 255;
    default:
      return true;
  }
}

TrackResult Table::track_any(Entry& e, Direction dir, const L4Info& p, uint64_t now) {
  const uint32_t now_c = coarse(now);
  e.epoch = epoch_;
  TrackResult r;
  switch (e.orig.proto) {
    case 6:
      r = track_tcp(e, dir, p, now_c);
      break;
    case 17:
      r = track_udp(e, dir, now_c);
      account(e, dir, p);
      break;
    case 1:
      r = track_icmp(e, dir, p, now_c);
      break;
    default:
      refresh(e, now_c, ticks_.generic);
      account(e, dir, p);
      r = TrackResult::kAccept;
      break;
  }
  if (r == TrackResult::kInvalid) {
    stats_.invalid.add();
  } else if (dir == Direction::kReply && r != TrackResult::kReopen) {
    // nf_conntrack_in(): any accepted reply-direction packet, ignored ones
    // included, marks the conntrack as having seen a reply.
    e.status |= status::kSeenReply;
  }
  return r;
}

TrackResult Table::track_tcp(Entry& e, Direction dir, const L4Info& p, uint32_t now_c) {
  if (!tcp_flags_valid(p.tcp_flags)) return TrackResult::kInvalid;  // tcp_error()
  const TcpFlagClass cls = tcp_flag_class(p.tcp_flags);
  const TcpState old_state = e.tcp_state();
  const TcpStep step = tcp_transition(dir, cls, old_state);
  const auto last_index = static_cast<TcpFlagClass>(e.tcp_last & kLastIndexMask);
  const Direction last_dir = (e.tcp_last & kLastDirReply) ? Direction::kReply : Direction::kOriginal;

  TcpState from = old_state;
  TcpState next = step.state;
  bool ignore = step.kind == Kind::kIgnore;
  if (step.kind == Kind::kInvalid) return TrackResult::kInvalid;

  if (step.kind == Kind::kState && next == TcpState::kSynSent &&
      old_state >= TcpState::kTimeWait) {
    // A SYN after TIME_WAIT/CLOSE (RFC 1122 4.2.2.13): if the connection was
    // closed by a FIN, or aborted by a RST from this same side, the old
    // conntrack dies and the SYN starts a new one (nf_ct_kill, -NF_REPEAT).
    // Otherwise netfilter treats the SYN as one to ignore.
    if ((e.tcp_last & (kCloseInitOrig | kCloseInitReply)) ||
        (last_dir == dir && last_index == TcpFlagClass::kRst)) {
      kill(e);
      return TrackResult::kReopen;
    }
    ignore = true;
  }

  if (ignore) {
    if (cls == TcpFlagClass::kSynAck && last_index == TcpFlagClass::kSyn && last_dir != dir &&
        p.tcp_ack == e.aux) {
      // This SYN/ACK answers a SYN we ignored: client and server are in
      // sync and we are not. Resynchronise as if from SYN_SENT.
      from = TcpState::kSynSent;
      next = TcpState::kSynRecv;
    } else {
      // Remember the ignored segment, so that the answer to it can be
      // recognised (the SYN/ACK above, or a challenge ACK in LAST_ACK).
      e.tcp_last = with_last(e.tcp_last, cls, dir);
      e.aux = segment_end(p);
      if (cls == TcpFlagClass::kSyn && dir == Direction::kOriginal) {
        e.tcp_last &= static_cast<uint8_t>(~(kSimultaneousOpen | kChallengeAck));
        if (old_state == TcpState::kLastAck) e.tcp_last |= kChallengeAck;
      }
      return TrackResult::kIgnore;
    }
  } else {
    switch (next) {
      case TcpState::kTimeWait:
        // RFC 5961: an ACK answering a SYN we let through in LAST_ACK is a
        // challenge ACK, not the last ACK of the close.
        if (old_state == TcpState::kLastAck && cls == TcpFlagClass::kAck && last_dir != dir &&
            last_index == TcpFlagClass::kSyn && (e.tcp_last & kChallengeAck)) {
          e.tcp_last &= static_cast<uint8_t>(~kChallengeAck);
          return TrackResult::kIgnore;
        }
        break;
      case TcpState::kSynSent2:
        e.tcp_last |= kSimultaneousOpen;
        break;
      case TcpState::kSynRecv:
        // The table stops at SYN_RECV for the reply's ACK; in a
        // simultaneous open that ACK completes the handshake.
        if (dir == Direction::kReply && cls == TcpFlagClass::kAck &&
            (e.tcp_last & kSimultaneousOpen)) {
          next = TcpState::kEstablished;
        }
        break;
      default:
        // CLOSE on RST: with no window tracking every RST the table
        // accepts is in window.
        break;
    }
  }

  e.tcp_last = with_last(e.tcp_last, cls, dir);
  e.proto_state = static_cast<uint8_t>(next);
  if (from != next && next == TcpState::kFinWait) {
    e.tcp_last |= dir == Direction::kOriginal ? kCloseInitOrig : kCloseInitReply;
  }

  uint32_t timeout =
      cls == TcpFlagClass::kRst ? ticks_.tcp[static_cast<unsigned>(TcpState::kClose)]
                                : ticks_.tcp[static_cast<unsigned>(next)];
  if (!(e.status & status::kSeenReply)) {
    if (cls == TcpFlagClass::kRst) {
      // "If only reply is a RST, we can consider ourselves not to have an
      // established connection": counted, then deleted at once.
      account(e, dir, p);
      kill(e);
      return TrackResult::kAccept;
    }
    if (cls == TcpFlagClass::kSyn && from == TcpState::kSynSent) {
      // A retransmitted SYN does not renew the timeout, so port reuse
      // cannot keep an unanswered entry (and its NAT binding) alive.
      return TrackResult::kAccept;
    }
    // A picked-up connection has not proven itself yet.
    if (next == TcpState::kEstablished && timeout > ticks_.tcp_unack) timeout = ticks_.tcp_unack;
  } else if (!(e.status & status::kAssured) &&
             (from == TcpState::kSynRecv || from == TcpState::kEstablished) &&
             next == TcpState::kEstablished) {
    // The ACK completing the handshake, or a picked-up connection's
    // answer: ASSURED.
    e.status |= status::kAssured;
  }
  refresh(e, now_c, timeout);
  account(e, dir, p);
  return TrackResult::kAccept;
}

TrackResult Table::track_udp(Entry& e, Direction /*dir*/, uint32_t now_c) {
  if (e.status & status::kSeenReply) {
    // Traffic both ways: a UDP stream. The longer timeout only once the
    // flow is still active two seconds after it began (6.1).
    // Once a stream, always one: the flag spares reading aux (line 1).
    uint32_t timeout = ticks_.udp;
    if ((e.flags & entry_flag::kUdpStream) || static_cast<int32_t>(now_c - e.aux) > 0) {
      e.flags |= entry_flag::kUdpStream;
      timeout = ticks_.udp_stream;
    }
    refresh(e, now_c, timeout);
    e.status |= status::kAssured;
  } else {
    refresh(e, now_c, ticks_.udp);
  }
  return TrackResult::kAccept;
}

TrackResult Table::track_icmp(Entry& e, Direction dir, const L4Info& p, uint32_t now_c) {
  // The kernel's ICMP tuple holds the type, so a request is never found in
  // the reply direction. Ours holds only addresses and identifier: a packet
  // of the wrong type for its direction is INVALID instead of a new flow.
  const auto request = static_cast<uint8_t>(e.aux);
  const uint8_t expected = dir == Direction::kOriginal ? request : icmp_reply_type(request);
  if (p.icmp_type != expected) return TrackResult::kInvalid;
  refresh(e, now_c, ticks_.icmp);
  account(e, dir, p);
  return TrackResult::kAccept;
}

}  // namespace dpgate::conntrack
