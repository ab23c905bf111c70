"""One message never starts a new timeline: discontinuities wait for the stream to confirm them.

A message that continues the stream (``message_num`` = last + 1 and, for data, the ``sample_num``
of the block being assembled or of the next one, and the channel and length that block wants
next) passes straight to the assembler. One that does
not -- a gap, a restart, a step back, an absurd sample number -- is held as a *suspect* until the
next message says what it was:

- the next message continues the suspect: the discontinuity is real (lost messages, a restart, a
  sample gap); both go on, and the assembler reports it as before, one message later;
- the next message continues the stream as it was: the suspect did not belong (a stranger's
  message, a stray with an absurd ``sample_num``, a duplicate, a copy of the next message that
  claims its number with another channel -- the real one wins); it is dropped and counted, and no
  trial is degraded for it -- unless the suspect was simply early (``reorder``: the next message
  is its predecessor), in which case both go on in order and nothing is lost;
- neither: the suspect is taken as real and the next message is judged afresh.

Only what the assembler would otherwise have taken as a change of timeline waits, and only for one
message (tens of microseconds on a rig; one block, 23 ms, for Falcon Output, whose messages are
whole blocks -- only when a message does not continue the stream).

The gate judges both protocols: it reads the assembler's view of the stream (``is_ours``,
``last_message_num``, ``current_sample``, ``expected_sample``, ``skipping_sample``, ``counters``)
and the messages' ``message_num``/``sample_num``/``num_samples``, which the ZMQ Interface's data
messages and Falcon Output's blocks both have (a TTL message carries no samples).
"""

from __future__ import annotations

from rtdecode.stream.assembler import BlockAssembler
from rtdecode.stream.falcon import FalconMessage
from rtdecode.stream.falcon_assembler import FalconAssembler
from rtdecode.stream.protocol import DataMessage, TtlMessage

Message = DataMessage | TtlMessage | FalconMessage


class StrayGate:
    def __init__(self, assembler: BlockAssembler | FalconAssembler) -> None:
        self.a = assembler
        self.suspect: Message | None = None
        self.counters = {"strays": 0, "reordered": 0}

    def _samples_fit(self, m: Message, cur: int | None, expected: int | None) -> bool:
        if isinstance(m, TtlMessage) or expected is None and cur is None:
            return True
        return m.sample_num in (cur, expected, self.a.skipping_sample)

    def _fits(self, m: Message, last: int | None, shape: bool = False) -> bool:
        """``m`` continues the stream as the assembler sees it (after message ``last``); ``shape``:
        and it is the channel and length the block being assembled wants next."""
        num_ok = last is None or m.message_num == last + 1
        fits = num_ok and self._samples_fit(m, self.a.current_sample, self.a.expected_sample)
        return fits and (not shape or self.a.fits_block(m))

    @staticmethod
    def _continues(s: Message, m: Message) -> bool:
        """``m`` is the message after ``s`` in ``s``'s own timeline."""
        if m.message_num != s.message_num + 1:
            return False
        if isinstance(s, TtlMessage) or isinstance(m, TtlMessage):
            return True
        return m.sample_num in (s.sample_num, s.sample_num + s.num_samples)

    def admit(self, m: Message) -> list[Message]:
        """The messages to hand the assembler now, in order (none while ``m`` is held)."""
        if not self.a.is_ours(m):
            return [m]  # another stream of the publisher: the assembler refuses it and keeps the count
        last = self.a.last_message_num
        s = self.suspect
        if s is None:
            if self._fits(m, last, shape=True):
                return [m]
            self.suspect = m
            return []
        self.suspect = None
        number_only = last is not None and s.message_num == last + 1  # the suspect's number fitted
        if self._continues(s, m) and not (number_only and self._samples_fit(m, *self._old_samples())):
            return [s, m]  # confirmed: the stream really changed
        if last is not None and m.message_num == last + 1 and s.message_num == m.message_num + 1:
            self.counters["reordered"] += 1
            return [m, s]  # s was early: both in order, nothing lost
        if number_only and m.message_num == s.message_num and self._fits(m, last, shape=True):
            self.counters["strays"] += 1  # two messages claimed one slot: the one that fits the stream wins
            return [m]
        after = s.message_num if number_only else last
        if self._fits(m, after):
            if last is not None and 1 < s.message_num <= last:
                self.a.counters["duplicates"] += 1  # a repeat of a message already taken
            else:
                self.counters["strays"] += 1
            if number_only:
                self.a.last_message_num = s.message_num  # its number was the stream's: not a gap
            return [m]
        return [s, *self.admit(m)]  # neither: take the suspect as real, judge m afresh

    def _old_samples(self) -> tuple[int | None, int | None]:
        return self.a.current_sample, self.a.expected_sample

    def flush(self) -> list[Message]:
        """At the end (stop): a suspect nothing contradicted is taken as real."""
        s, self.suspect = self.suspect, None
        return [] if s is None else [s]
