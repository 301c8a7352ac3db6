"""The society's groups: who learns from whom, as the agents report it.

Every agent chooses by itself the peers it learns from (those alike enough: federated weights
averaged in, experience taken; see :mod:`agents.learner.federation`) and reports them in its
telemetry (``learns_from``). The society's groups are the connected components of that
relation, taken both ways: two agents are in one group when a chain of "learns from" links
them. An agent that learns from nobody and from which nobody learns (a twin, an agent on a
device unlike all others) is a group of its own. A group is named after its first member in
sorted order, so a name is an agent id: as bounded as the agents themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["group_of", "society_groups"]


def society_groups(learns_from: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The connected components of the "learns from" relation, each sorted, first-sorted.

    ``learns_from`` maps every known agent to the peers it reports learning from; a peer
    named but not known as an agent is left out (it may be gone, or a forgery).
    """
    parent = {agent: agent for agent in learns_from}

    def root(agent: str) -> str:
        while parent[agent] != agent:
            parent[agent] = parent[parent[agent]]
            agent = parent[agent]
        return agent

    for agent, peers in learns_from.items():
        for peer in peers:
            if peer in parent:
                a, b = root(agent), root(peer)
                if a != b:
                    parent[max(a, b)] = min(a, b)
    members: dict[str, list[str]] = {}
    for agent in parent:
        members.setdefault(root(agent), []).append(agent)
    return sorted(sorted(group) for group in members.values())


def group_of(groups: Iterable[list[str]]) -> dict[str, str]:
    """Each agent's group name: the group's first member."""
    return {agent: group[0] for group in groups for agent in group}
