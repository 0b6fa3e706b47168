"""State format upgrades: ``ipfs-cluster-service state upgrade`` and ``daemon --upgrade``.

A release that changes the on-disk format bumps ``state.store.FORMAT_VERSION`` and adds
``state.store.MIGRATIONS[old]``; the daemon then refuses old state with a message naming both versions and
``ipfs-cluster-service state upgrade``, which calls :func:`upgrade_state`. Before migrating, the Raft data
folder is copied to ``<data>.bak.<UTC timestamp>`` (a copy, not the ``raft.old.N`` rotation, so that a later
``state cleanup`` cannot rotate the only pre-upgrade copy away).
"""

from __future__ import annotations

import logging
from pathlib import Path

from pincluster.state.ops import UpgradeResult, raft_data_folder, upgrade_data_folder

log = logging.getLogger("pincluster.raft")

__all__ = ["UpgradeResult", "describe", "upgrade_state", "upgrade_state_result"]


def upgrade_state_result(config_folder: Path) -> UpgradeResult:
    """Upgrade the state of the peer configured in ``config_folder`` and say what was done."""
    result = upgrade_data_folder(raft_data_folder(Path(config_folder)))
    log.debug("%s", describe(result))
    return result


def upgrade_state(config_folder: Path) -> None:
    """Bring the offline state of the peer in ``config_folder`` to this release's format (the daemon must be
    stopped and the caller must hold the folder lock). Raises ``StateVersionError`` when that is impossible."""
    upgrade_state_result(config_folder)


def describe(result: UpgradeResult) -> str:
    """One line for the user."""
    if result.found is None:
        return f"no state in {result.data_folder}: nothing to upgrade"
    if result.backup is None:
        return f"the state in {result.data_folder} is current (format version {result.to}): nothing to upgrade"
    return (
        f"upgraded the state in {result.data_folder} from format version {result.found} to {result.to} "
        f"(backup in {result.backup})"
    )
