"""Several processes under ``torchrun``: who does which batch, and failing together.

Every process iterates over all the batches and evaluates those whose index it owns (``index % world
== rank``). After each round of ``world`` batches the processes exchange a status, so that when one
of them fails, the others learn it at the end of the round and stop too, instead of waiting in a
collective until the backend's timeout. The failing process raises its own error; the others raise
[`PeerFailure`][signattack.evaluation.distributed.PeerFailure], which names it.

Works without torch: outside a process group there is one process and nothing to exchange.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["PeerFailure"]

_OK, _FAILED = "ok", "failed"


class PeerFailure(RuntimeError):
    """Another process of the evaluation failed; its own error is reported there."""


Payload = TypeVar("Payload")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the evaluation's processes.

    Attributes:
        rank: This process's index.
        world: The number of processes.
        grouped: Whether a ``torch.distributed`` process group is running.
    """

    rank: int
    world: int
    grouped: bool = False

    @classmethod
    def current(cls) -> Ranks:
        """The running process group's ranks, or a single process."""
        if "torch.distributed" not in sys.modules:  # nothing imported it: no group runs
            return cls(0, 1)
        from torch import distributed

        if distributed.is_available() and distributed.is_initialized():
            return cls(distributed.get_rank(), distributed.get_world_size(), grouped=True)
        return cls(0, 1)

    def owns(self, index: int) -> bool:
        """Whether batch ``index`` is this process's to evaluate."""
        return index % self.world == self.rank

    def round_done(self, index: int) -> None:
        """After batch ``index``: at the end of a round, check that every process is well.

        Raises:
            PeerFailure: Another process has failed.
        """
        if self.grouped and index % self.world == self.world - 1:
            self._exchange(_OK, None)

    def gather(self, payload: Payload) -> list[Payload]:
        """Every process's ``payload``, in rank order (this process's alone without a group).

        Raises:
            PeerFailure: Another process has failed.
        """
        if not self.grouped:
            return [payload]
        return self._exchange(_OK, payload)

    def fail(self) -> None:
        """Tell the other processes that this one failed (call once, then raise)."""
        if self.grouped:
            _all_gather(self.world, (_FAILED, None))

    def _exchange(self, state: str, payload: Payload) -> list[Payload]:
        gathered = _all_gather(self.world, (state, payload))
        failed = [rank for rank, (other, _) in enumerate(gathered) if other == _FAILED]
        if failed:
            raise PeerFailure(
                f"evaluation stopped: the process of rank {failed[0]} failed (its error is "
                "reported there)"
            )
        return [received for _, received in gathered]


def _all_gather(world: int, status: tuple[str, Payload]) -> list[tuple[str, Payload]]:
    """Every process's ``status``: each process sends what its own code made, so the
    payloads all have the type of this one's."""
    from torch import distributed

    gathered: list[tuple[str, Payload]] = [status] * world
    distributed.all_gather_object(gathered, status)
    return gathered
