"""Several processes under ``torchrun``: who does which batch, and failing together.

Every process iterates over all the batches and evaluates those whose index it owns
(``index % world == rank``). After each round of ``world`` batches the processes exchange a
status, so that when one of them fails, the others learn it at the end of the round and
stop too, instead of waiting in a collective until the backend's timeout. The failing
process raises its own error; the others raise :class:`PeerFailure`, which names it.

Works without torch: outside a process group there is one process and nothing to exchange.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["PeerFailure", "Ranks"]

_OK, _FAILED = "ok", "failed"


class PeerFailure(RuntimeError):
    """Another process of the evaluation failed; its own error is reported there."""


@dataclass(frozen=True)
class Ranks:
    """This process's place among the evaluation's processes.

    Attributes:
        rank: This process's index.
        world: The number of processes.
        dist: ``torch.distributed`` when a process group is running, else ``None``.
    """

    rank: int
    world: int
    dist: Any

    @classmethod
    def current(cls) -> Ranks:
        """The running process group's ranks, or a single process."""
        dist = sys.modules.get("torch.distributed")
        if dist is not None and dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size(), dist)
        return cls(0, 1, None)

    def owns(self, index: int) -> bool:
        """Whether batch ``index`` is this process's to evaluate."""
        return index % self.world == self.rank

    def round_done(self, index: int) -> None:
        """After batch ``index``: at the end of a round, check that every process is well.

        Raises:
            PeerFailure: Another process has failed.
        """
        if self.dist is not None and index % self.world == self.world - 1:
            self._exchange((_OK, None))

    def gather(self, payload: Any) -> list[Any]:
        """Every process's ``payload``, in rank order (this process's alone without a group).

        Raises:
            PeerFailure: Another process has failed.
        """
        if self.dist is None:
            return [payload]
        return self._exchange((_OK, payload))

    def fail(self) -> None:
        """Tell the other processes that this one failed (call once, then raise)."""
        if self.dist is not None:
            gathered: list[Any] = [None] * self.world
            self.dist.all_gather_object(gathered, (_FAILED, None))

    def _exchange(self, status: tuple[str, Any]) -> list[Any]:
        gathered: list[Any] = [None] * self.world
        self.dist.all_gather_object(gathered, status)
        failed = [rank for rank, (state, _) in enumerate(gathered) if state == _FAILED]
        if failed:
            raise PeerFailure(
                f"evaluation stopped: the process of rank {failed[0]} failed (its error is "
                "reported there)"
            )
        return [payload for _, payload in gathered]
