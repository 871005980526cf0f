"""The election core: who leads, and until when that is safe.

`core` runs the protocol of one candidate on the thread of `worker`; `candidacy` owns its
znode and its presence marker; `presence` reads the others' markers, to tell a candidate
that left from one whose znode was deleted under it; `roster` finds the candidates in a
listing; `leader` and `follower` are the two
sides of a candidate, which share its `standing`; `lease` says until when a leader may
act, and why no two leases overlap; `record` is the small znode through which followers
learn who leads. ZooKeeper is reached only through `sidecar.zk`; the verdicts go to
`sidecar.board`, which the faces read.
"""

from .candidacy import identity_of, parse_candidates
from .core import Election

__all__ = ["Election", "identity_of", "parse_candidates"]
