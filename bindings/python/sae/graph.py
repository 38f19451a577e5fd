"""Sparse feature circuits (include/sae/graph.h): :class:`PromptPairs` and :class:`Graph`
(discover a circuit, query, prune, evaluate, export).

A circuit is computed in C; the model is reached through a :class:`sae.Host`: a model written
in Python (``forward``, ``backward`` and, for edges, ``backward_from``) or :class:`sae.Llama2`::

    host = sae.Llama2("stories260K.bin")
    pairs = sae.PromptPairs(clean=[[1, 5, 9], ...], patch=[[1, 7, 9], ...],
                            clean_answers=[338, ...], patch_answers=[346, ...])
    g = sae.Graph.attribute(host, ["resid.0", "resid.1"], [d0, d1], pairs, method="ig")
    g.node_effects                    # numpy view; g.top_nodes(10), g.save("c.json"), ...
    g.evaluate(host, [d0, d1], pairs).faithfulness
"""

import ctypes
import weakref
from collections import namedtuple

import numpy as np

from . import _arrays, _structs
from . import _host_structs as _hs
from ._callbacks import CallbackGuard
from ._lib import ECANCELED, SaeError, fspath_bytes, lib, new_handle

#: ``SAE_GRAPH_ERROR``: the feature id of an error node.
ERROR = -1
#: ``SAE_GRAPH_ALL_POSITIONS``: the position of a node summed over positions.
ALL_POSITIONS = -1

_NO_EDGES = 1

#: What :meth:`Graph.evaluate` returns (``sae_graph_eval``).
GraphEval = namedtuple("GraphEval", ["n_nodes", "metric_full", "metric_empty", "metric_circuit",
                                     "metric_complement", "faithfulness", "completeness"])


def _lookup(table, value, what):
    try:
        return table[value]
    except (KeyError, TypeError):
        raise ValueError("unknown %s %r; expected one of %s"
                         % (what, value, ", ".join(map(repr, table)))) from None


class PromptPairs:
    """Clean prompts, their patch (counterfactual) prompts and both answers (``sae_prompt_pairs``).

    Args:
        clean: token sequences (lists or arrays of ints), one per pair.
        clean_answers: the answer token of each clean prompt.
        patch: token sequences of the same lengths, or None for zero ablation.
        patch_answers: the counterfactual answers, or None (the metric is then the clean
            answer's logit).

    The metric of the circuits is logit[clean answer] − logit[patch answer] at the last position.
    """

    def __init__(self, clean, clean_answers, patch=None, patch_answers=None):
        clean = [np.asarray(c, dtype=np.int32).ravel() for c in clean]
        lengths = [len(c) for c in clean]
        self.offsets = np.zeros(len(clean) + 1, dtype=np.int64)
        self.offsets[1:] = np.cumsum(lengths)
        self.clean = np.ascontiguousarray(np.concatenate(clean) if clean else
                                          np.zeros(0, np.int32))
        self.patch = None
        if patch is not None:
            patch = [np.asarray(p, dtype=np.int32).ravel() for p in patch]
            if [len(p) for p in patch] != lengths:
                raise ValueError("patch prompts must have the lengths of the clean prompts")
            self.patch = np.ascontiguousarray(np.concatenate(patch))
        self.clean_answers = np.ascontiguousarray(clean_answers, dtype=np.int32)
        self.patch_answers = (None if patch_answers is None
                              else np.ascontiguousarray(patch_answers, dtype=np.int32))
        for name, a in (("clean_answers", self.clean_answers),
                        ("patch_answers", self.patch_answers)):
            if a is not None and a.shape != (len(clean),):
                raise ValueError("%s has shape %s, expected (%d,)" % (name, a.shape, len(clean)))
        self.struct = _structs.new(
            _hs.PromptPairs, n_pairs=len(clean), offsets=self.offsets.ctypes.data,
            clean_tokens=self.clean.ctypes.data,
            patch_tokens=_arrays.address(self.patch),
            clean_answers=self.clean_answers.ctypes.data,
            patch_answers=_arrays.address(self.patch_answers))

    def __len__(self):
        return int(self.struct.n_pairs)


def _dict_table(dicts):
    handles = [d._handle for d in dicts]
    return (ctypes.c_void_p * max(1, len(handles)))(*handles)


def _eval_options(ablation, errors, batch_size, threads):
    return _structs.new(_hs.GraphEvalOptions,
                        ablation=_lookup(_hs.GRAPH_ABLATIONS, ablation, "ablation"),
                        errors=_lookup(_hs.GRAPH_ERRORS, errors, "errors"),
                        batch_size=int(batch_size), n_threads=int(threads))


class Graph:
    """A sparse feature circuit (``sae_graph``): hook points, nodes with effects on a metric,
    weighted edges, labels and metadata.

    Nodes are (hook index, position, feature) with feature :data:`ERROR` for the SAE error node
    and position :data:`ALL_POSITIONS` when positions are summed. The ``node_*`` and ``edge_*``
    properties are read-only numpy views of the graph's memory; they keep it alive, and the
    methods that change the nodes or edges (``add_nodes``, ``add_edges``, ``prune``) refuse to
    run while any view exists (copy the arrays to keep them). One thread at a time.
    """

    def __init__(self, handle):
        """Wrap a ``sae_graph *`` and take ownership of it (see :meth:`attribute`,
        :meth:`load`, :meth:`create`)."""
        self._handle = handle.value if hasattr(handle, "value") else handle
        if not self._handle:
            raise ValueError("NULL sae_graph handle")
        self._closed = False
        self._views = weakref.WeakSet()

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def attribute(cls, host, hooks, dicts, pairs, *, method="ig", steps=10, per_position=False,
                  node_threshold=0.1, edge_threshold=0.01, edges=True, batch_size=16,
                  threads=0, progress=None):
        """Discover a circuit (``sae_graph_attribute``).

        Args:
            host: a :class:`sae.Host` (with ``backward``; ``backward_from`` for edges).
            hooks: hook point names, upstream first.
            dicts: a :class:`sae.Dictionary` per hook point.
            pairs: :class:`PromptPairs`.
            method: "ig" (integrated gradients, ``steps`` steps), "atp" or "exact".
            per_position: one node per position (prompts of one length) instead of summed.
            node_threshold, edge_threshold: edges join nodes with |effect| > node_threshold and
                are kept when |weight| > edge_threshold.
            edges: False for node effects only.
            batch_size: sequences per host pass; threads: threads of the SAE products.
            progress: ``progress(done, total)`` after each host pass; return True to stop.
        """
        ids = np.array([host.hook_id(h) for h in hooks], dtype=np.int32)
        if len(dicts) != len(ids):
            raise ValueError("%d hooks but %d dictionaries" % (len(ids), len(dicts)))
        table = _dict_table(dicts)
        opts = _structs.new(_hs.GraphOptions,
                            method=_lookup(_hs.GRAPH_METHODS, method, "method"),
                            aggregation=1 if per_position else 0, ig_steps=int(steps),
                            node_threshold=float(node_threshold),
                            edge_threshold=float(edge_threshold),
                            flags=0 if edges else _NO_EDGES, n_threads=int(threads),
                            batch_size=int(batch_size))
        guard, fn = CallbackGuard(), None
        if progress is not None:
            def on_progress(user, done, total):
                try:
                    return 1 if progress(done, total) else 0
                except BaseException as exc:
                    guard.record(exc)
                    return 1
            fn = _hs.GraphProgressFn(on_progress)
            opts.progress = fn
        out = new_handle()
        host._call_with(guard, lib.sae_graph_attribute, ctypes.byref(out), host.table,
                        ids.ctypes.data, table, len(ids), ctypes.byref(pairs.struct),
                        ctypes.byref(opts))
        return cls(out)

    @classmethod
    def create(cls, hook_names, d_sae):
        """An empty graph over named hook points with ``d_sae`` features each."""
        names = (ctypes.c_char_p * max(1, len(hook_names)))(*[n.encode() for n in hook_names])
        sizes = np.ascontiguousarray(d_sae, dtype=np.int64)
        out = new_handle()
        lib.sae_graph_create(ctypes.byref(out), len(hook_names), names, sizes.ctypes.data, None)
        return cls(out)

    @classmethod
    def load(cls, path):
        """Read a graph written by :meth:`save` (or ``sae circuit``)."""
        out = new_handle()
        lib.sae_graph_load_json(ctypes.byref(out), fspath_bytes(path), None)
        return cls(out)

    def close(self):
        """Release the graph: now, or with the last numpy view of its arrays (each view keeps
        the graph's memory alive)."""
        self._closed = True
        if not any(True for _ in self._views):
            self._free()

    def _free(self):
        if getattr(self, "_handle", None):
            lib.sae_graph_free(self._handle)
            self._handle = None

    def __del__(self):  # views hold the graph, so this runs after the last one is gone
        self._free()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _live(self):
        if self._closed or not self._handle:
            raise ValueError("the graph is closed")
        return self._handle

    def _mutable(self):
        if any(True for _ in self._views):
            raise RuntimeError("numpy views of this graph's arrays are alive; delete or copy "
                               "them before changing the graph")
        return self._live()

    # ---- contents ------------------------------------------------------------------------

    @property
    def info(self):
        """A dict of the graph's metadata: method, aggregation, ig_steps, n_pairs,
        n_positions, node_threshold, edge_threshold, metric_clean, metric_patch, n_nodes,
        n_edges, n_hooks."""
        i = _structs.new(_hs.GraphInfo)
        lib.sae_graph_get_info(self._live(), ctypes.byref(i))
        return {"method": (lib.sae_graph_method_name(i.method).decode() if i.method >= 0
                           else None),
                "aggregation": "per_position" if i.aggregation == 1 else "sum",
                "ig_steps": i.ig_steps, "n_pairs": i.n_pairs, "n_positions": i.n_positions,
                "node_threshold": i.node_threshold, "edge_threshold": i.edge_threshold,
                "metric_clean": i.metric_clean, "metric_patch": i.metric_patch,
                "n_nodes": i.n_nodes, "n_edges": i.n_edges, "n_hooks": i.n_hooks}

    @property
    def hook_names(self):
        """The hook points, in the order of the node hook indices."""
        n = self.info["n_hooks"]
        return [lib.sae_graph_hook_name(self._live(), k).decode() for k in range(n)]

    @property
    def d_sae(self):
        """Features of each hook point's dictionary."""
        return [lib.sae_graph_hook_d_sae(self._live(), k) for k in range(self.info["n_hooks"])]

    def _arrays(self):
        a = _structs.new(_hs.GraphArrays)
        lib.sae_graph_get_arrays(self._live(), ctypes.byref(a))
        return a

    def _view(self, field, count, dtype):
        ptr = getattr(self._arrays(), field)
        if not ptr or count == 0:
            return np.zeros(0, dtype=dtype)
        view, holder = _arrays.borrowed_view(ptr, (count,), dtype, self)
        self._views.add(holder)
        return view

    def __len__(self):
        return int(self._arrays().n_nodes)

    @property
    def node_hooks(self):
        """(n_nodes) int32 hook indices (view)."""
        return self._view("node_hooks", len(self), np.int32)

    @property
    def node_positions(self):
        """(n_nodes) int32 positions, :data:`ALL_POSITIONS` when summed (view)."""
        return self._view("node_positions", len(self), np.int32)

    @property
    def node_features(self):
        """(n_nodes) int32 feature ids, :data:`ERROR` for error nodes (view)."""
        return self._view("node_features", len(self), np.int32)

    @property
    def node_effects(self):
        """(n_nodes) float32 effects on the metric (view)."""
        return self._view("node_effects", len(self), np.float32)

    @property
    def n_edges(self):
        """Number of edges."""
        return int(self._arrays().n_edges)

    @property
    def edge_sources(self):
        """(n_edges) int64 upstream node indices (view)."""
        return self._view("edge_sources", self.n_edges, np.int64)

    @property
    def edge_targets(self):
        """(n_edges) int64 downstream node indices (view)."""
        return self._view("edge_targets", self.n_edges, np.int64)

    @property
    def edge_weights(self):
        """(n_edges) float32 weights (view)."""
        return self._view("edge_weights", self.n_edges, np.float32)

    def add_nodes(self, hooks, positions, features, effects):
        """Append nodes (arrays of equal length); duplicates and out-of-range ids raise."""
        cols = [np.ascontiguousarray(hooks, dtype=np.int32),
                np.ascontiguousarray(positions, dtype=np.int32),
                np.ascontiguousarray(features, dtype=np.int32),
                np.ascontiguousarray(effects, dtype=np.float32)]
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError("hooks, positions, features and effects must have one length")
        lib.sae_graph_add_nodes(self._mutable(), n, *[c.ctypes.data for c in cols])

    def add_edges(self, sources, targets, weights):
        """Append edges between existing nodes."""
        cols = [np.ascontiguousarray(sources, dtype=np.int64),
                np.ascontiguousarray(targets, dtype=np.int64),
                np.ascontiguousarray(weights, dtype=np.float32)]
        n = len(cols[0])
        if any(len(c) != n for c in cols):
            raise ValueError("sources, targets and weights must have one length")
        lib.sae_graph_add_edges(self._mutable(), n, *[c.ctypes.data for c in cols])

    def find_node(self, hook, feature, position=ALL_POSITIONS):
        """Index of a node (hook index or name), or None."""
        if isinstance(hook, str):
            hook = self.hook_names.index(hook)
        out = ctypes.c_int64(-1)
        try:
            lib.sae_graph_find_node(ctypes.byref(out), self._live(), int(hook), int(position),
                                    int(feature))
        except SaeError:
            return None
        return out.value

    def top_nodes(self, n, hook=None):
        """Indices of the ``n`` nodes of largest |effect| (of one hook index or name)."""
        if isinstance(hook, str):
            hook = self.hook_names.index(hook)
        out = np.zeros(max(1, n), dtype=np.int64)
        count = ctypes.c_int64(0)
        lib.sae_graph_top_nodes(out.ctypes.data, ctypes.byref(count), self._live(), int(n),
                                -1 if hook is None else int(hook))
        return out[:count.value].copy()

    def top_edges(self, n):
        """Indices of the ``n`` edges of largest |weight|."""
        out = np.zeros(max(1, n), dtype=np.int64)
        count = ctypes.c_int64(0)
        lib.sae_graph_top_edges(out.ctypes.data, ctypes.byref(count), self._live(), int(n))
        return out[:count.value].copy()

    def prune(self, node_threshold, edge_threshold=0.0):
        """Drop nodes with |effect| <= node_threshold (and their edges) and edges with
        |weight| <= edge_threshold, in place."""
        lib.sae_graph_prune(self._mutable(), float(node_threshold), float(edge_threshold))

    def set_label(self, hook, feature, label):
        """Label a feature (or :data:`ERROR`) of a hook point (index or name); "" removes it."""
        if isinstance(hook, str):
            hook = self.hook_names.index(hook)
        lib.sae_graph_set_label(self._live(), int(hook), int(feature), label.encode())

    def label(self, hook, feature):
        """The label of a feature, or None."""
        if isinstance(hook, str):
            hook = self.hook_names.index(hook)
        raw = lib.sae_graph_label(self._live(), int(hook), int(feature))
        return raw.decode() if raw is not None else None

    def set_metadata(self, key, value):
        """Set a metadata string (exported in JSON)."""
        lib.sae_graph_set_metadata(self._live(), key.encode(), str(value).encode())

    def metadata(self, key):
        """A metadata string, or None."""
        raw = lib.sae_graph_metadata(self._live(), key.encode())
        return raw.decode() if raw is not None else None

    # ---- export --------------------------------------------------------------------------

    def save(self, path):
        """Write the graph as JSON (graph.h, ``sae_graph_save_json``)."""
        lib.sae_graph_save_json(self._live(), fspath_bytes(path))

    def save_dot(self, path, *, node_threshold=0.0, edge_threshold=0.0, max_nodes=0):
        """Write the graph for Graphviz (``dot -Tsvg`` renders it)."""
        o = _structs.new(_hs.GraphDotOptions, node_threshold=float(node_threshold),
                         edge_threshold=float(edge_threshold), max_nodes=int(max_nodes))
        lib.sae_graph_save_dot(self._live(), fspath_bytes(path), ctypes.byref(o))

    # ---- evaluation ----------------------------------------------------------------------

    def _flags(self, nodes):
        flags = np.zeros(max(1, len(self)), dtype=np.uint8)
        idx = np.asarray(nodes)
        if idx.dtype == np.bool_:
            if idx.shape != (len(self),):
                raise ValueError("a node mask needs %d entries" % len(self))
            flags[:len(self)] = idx
        else:
            flags[idx.astype(np.int64)] = 1
        return flags

    def evaluate(self, host, dicts, pairs, circuit=None, *, ablation="mean", errors="nodes",
                 batch_size=16, threads=0):
        """Faithfulness and completeness of a circuit (``sae_graph_evaluate``).

        ``circuit``: node indices or a boolean mask; None: the nodes above the graph's node
        threshold. Returns a :data:`GraphEval`.
        """
        flags = None if circuit is None else self._flags(circuit)
        out = _structs.new(_hs.GraphEval)
        opts = _eval_options(ablation, errors, batch_size, threads)
        host.call(lib.sae_graph_evaluate, ctypes.byref(out), self._live(),
                  _arrays.address(flags), host.table, _dict_table(dicts),
                  ctypes.byref(pairs.struct), ctypes.byref(opts))
        return GraphEval(out.n_nodes, out.metric_full, out.metric_empty, out.metric_circuit,
                         out.metric_complement, out.faithfulness, out.completeness)

    def faithfulness_curve(self, host, dicts, pairs, sizes, *, completeness=True,
                           ablation="mean", errors="nodes", batch_size=16, threads=0):
        """Faithfulness (and completeness) of the circuits of the ``sizes`` nodes of largest
        |effect|: arrays (len(sizes),); completeness None when not asked for."""
        sizes = np.ascontiguousarray(sizes, dtype=np.int64)
        faith = np.zeros(len(sizes))
        comp = np.zeros(len(sizes)) if completeness else None
        opts = _eval_options(ablation, errors, batch_size, threads)
        host.call(lib.sae_graph_faithfulness_curve, faith.ctypes.data, _arrays.address(comp),
                  self._live(), sizes.ctypes.data, len(sizes), host.table,
                  _dict_table(dicts), ctypes.byref(pairs.struct), ctypes.byref(opts))
        return faith, comp

    def ablate(self, host, dicts, pairs, nodes, *, ablation="zero", batch_size=16, threads=0):
        """SHIFT: the metric per pair without and with the given nodes (indices or a mask)
        ablated, everything else — the error terms in particular — kept. Returns two float32
        arrays (n_pairs,)."""
        flags = self._flags(nodes)
        clean = np.zeros(len(pairs), dtype=np.float32)
        ablated = np.zeros(len(pairs), dtype=np.float32)
        opts = _eval_options(ablation, "nodes", batch_size, threads)
        host.call(lib.sae_graph_ablate, clean.ctypes.data, ablated.ctypes.data, self._live(),
                  flags.ctypes.data, host.table, _dict_table(dicts),
                  ctypes.byref(pairs.struct), ctypes.byref(opts))
        return clean, ablated

    def __repr__(self):
        if self._closed:
            return "<sae.Graph closed>"
        i = self.info
        return "<sae.Graph %s, %d hooks, %d nodes, %d edges>" % (i["method"], i["n_hooks"],
                                                                 i["n_nodes"], i["n_edges"])
