"""The graph as a file for Gephi, Cytoscape or code: GraphML, GEXF or node-link JSON."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Literal

import networkx as nx

from streams.api.models import GraphEdge, GraphNode

ExportFormat = Literal["graphml", "gexf", "json"]
MEDIA_TYPES: dict[str, str] = {"graphml": "application/graphml+xml", "gexf": "application/gexf+xml",
                               "json": "application/json"}


def to_networkx(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge]) -> nx.MultiDiGraph:
    """Entities as nodes (name, type, mentions), relations as directed edges (type, weight).

    A multigraph, since two entities can be related in more than one way.
    """
    g: nx.MultiDiGraph = nx.MultiDiGraph()
    for n in nodes:
        g.add_node(n.id, label=n.name, type=n.type, mention_count=n.mention_count)
    for e in edges:
        if e.source in g and e.target in g:
            # "relation", not "type": GEXF reserves an edge's type for directed/undirected/mutual.
            g.add_edge(e.source, e.target, key=e.id, label=e.type, relation=e.type, weight=e.weight)
    return g


def export_graph(nodes: Sequence[GraphNode], edges: Sequence[GraphEdge], fmt: ExportFormat) -> bytes:
    if fmt == "json":
        return json.dumps({"nodes": [n.model_dump() for n in nodes], "edges": [e.model_dump() for e in edges]},
                          ensure_ascii=False).encode()
    g = to_networkx(nodes, edges)
    buf = io.BytesIO()
    if fmt == "graphml":
        nx.write_graphml(g, buf)
    else:
        nx.write_gexf(g, buf)
    return buf.getvalue()
