"""When the training loops log, evaluate and write checkpoints: one :class:`Every` per
periodic event, asked at each chunk end whether it is due.

A loop only looks at its schedule at chunk ends (env step ``step``), so an event set for env
step ``next`` happens at the first chunk end at or after it. After it happens, the next one
is set for the next multiple of ``every`` after ``step`` (``aligned``, the default) or for
``step + every`` (the engine's checkpoints: this many env steps after the last one).
"""

from __future__ import annotations

import dataclasses

__all__ = ["Every", "next_multiple"]


def next_multiple(step: int, every: int) -> int:
    """The first multiple of ``every`` after ``step`` (``every >= 1``)."""
    return (step // every + 1) * every


@dataclasses.dataclass
class Every:
    """A periodic event every ``every`` env steps (0: never), next due at env step ``next``."""

    every: int
    next: int
    aligned: bool = True

    @classmethod
    def after(cls, step: int, every: int, aligned: bool = True) -> Every:
        """The event as it stands at env step ``step``, the last time it happened (0 at the
        start of a run): next due one period later."""
        event = cls(every, 0, aligned)
        if every:
            event.done(step)
        return event

    def due(self, step: int, final: bool = False) -> bool:
        """Whether the event happens at a chunk end at env step ``step``: its time has come,
        or, with ``final``, the run ends here. Never if ``every`` is 0."""
        return self.every > 0 and (step >= self.next or final)

    def done(self, step: int) -> None:
        """The event happened at env step ``step``: set the next one."""
        self.next = next_multiple(step, self.every) if self.aligned else step + self.every
