"""Do two SynthVeRi folders share a vehicle? The check behind the stand-in for ImageNet.

The papers start from ImageNet; our ``cpu`` profile starts from a backbone pretrained on a
SynthVeRi folder generated for it alone (another seed). That is a fair stand-in only if the
pretraining data hold none of the vehicles the experiments are evaluated on — not the same
identity, and not the same combination of identity *details* (the discrete attributes that tell
two vehicles of one type and colour apart: grille, lights, stickers, decals, stripes, roof,
wheels, plate). Identities are compared from the generator's plan (:func:`build_plan`), which is
what the images are rendered from.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

import numpy as np

from reidlib.data.synth.config import preset_params
from reidlib.data.synth.plan import build_plan

__all__ = ["identity_signature", "detail_signature", "shared_vehicles", "first_disjoint_seed",
           "discrete_fields", "nearest_distances", "nearest_identity_distances"]

#: attributes that do not describe the vehicle's appearance
_NOT_APPEARANCE = ("vid", "family", "changed")


def _canon(x: Any) -> Any:
    if isinstance(x, float):
        return round(x, 9)
    if isinstance(x, dict):
        return {k: _canon(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        return [_canon(v) for v in x]
    return x


def identity_signature(ident: dict) -> str:
    """Every appearance attribute of a planned identity (continuous ones rounded to 1e-9)."""
    return json.dumps(_canon({k: v for k, v in ident.items() if k not in _NOT_APPEARANCE}), sort_keys=True)


def _discrete(x: Any) -> Any:
    """The discrete skeleton of an attribute: strings, ints, bools and which details exist;
    continuous placements and sizes dropped."""
    if isinstance(x, bool) or isinstance(x, (int, str)) or x is None:
        return x
    if isinstance(x, float):
        return "·"
    if isinstance(x, dict):
        return {k: _discrete(v) for k, v in sorted(x.items())}
    if isinstance(x, (list, tuple)):
        if x and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in x):
            return "colour" if len(x) == 3 else len(x)
        return [_discrete(v) for v in x]
    return str(type(x))


def detail_signature(ident: dict) -> str:
    """The combination of discrete identity details (type, colour, grille, lights, which stickers /
    decals / stripes, roof, wheels, plate): two vehicles equal here look alike up to placement."""
    return json.dumps(_discrete({k: v for k, v in ident.items() if k not in _NOT_APPEARANCE}), sort_keys=True)


def _plan_identities(preset: str, seed: int) -> list[dict]:
    return list(build_plan(preset_params(preset), seed=seed).identities.values())


def shared_vehicles(preset_a: str, seed_a: int, preset_b: str, seed_b: int) -> dict[str, int]:
    """How many vehicles two SynthVeRi plans share: ``{"identities", "detail combinations",
    "plates"}`` (0, 0, 0 for disjoint data)."""
    a, b = _plan_identities(preset_a, seed_a), _plan_identities(preset_b, seed_b)
    out = {}
    for name, key in (("identities", identity_signature), ("detail combinations", detail_signature),
                      ("plates", lambda i: i.get("plate"))):
        out[name] = len({key(i) for i in a} & {key(i) for i in b})
    return out


def first_disjoint_seed(preset: str, eval_seeds: Iterable[int], start: int, tries: int = 100) -> int:
    """The first seed ``>= start`` whose plan shares no vehicle (:func:`shared_vehicles`) with the
    plans of ``eval_seeds`` (same preset)."""
    eval_seeds = list(eval_seeds)
    for s in range(int(start), int(start) + tries):
        if s in eval_seeds:
            continue
        if all(not any(shared_vehicles(preset, s, preset, e).values()) for e in eval_seeds):
            return s
    raise RuntimeError(f"no seed in [{start}, {start + tries}) gives a {preset} plan disjoint from seeds {eval_seeds}")


#: fields left out of the near-duplicate distance: not appearance, or unique per vehicle (the
#: plate: compared on its own by :func:`shared_vehicles`)
_NOT_COMPARED = _NOT_APPEARANCE + ("plate",)


def discrete_fields(ident: dict) -> dict[str, str]:
    """``{field: its discrete skeleton}`` of a planned identity: every attribute but the plate
    (:data:`_NOT_COMPARED`), each entry of a detail group (``front.stickers``, ``roof.rack``,
    ...) a field of its own, compared as :func:`detail_signature` compares it (which details
    exist and their discrete values; placements, sizes and colour triples dropped). Two
    identities equal on every field have the same details up to placement and plate."""
    out = {}
    for key, value in sorted(ident.items()):
        if key in _NOT_COMPARED:
            continue
        items = sorted(value.items()) if isinstance(value, dict) else [(None, value)]
        for sub, v in items:
            out[key if sub is None else f"{key}.{sub}"] = json.dumps(_discrete(v), sort_keys=True)
    return out


def nearest_distances(pretrain: Sequence[dict], evaluation: Sequence[dict]) -> dict[str, Any]:
    """For every identity of ``evaluation``, the fewest :func:`discrete_fields` in which it differs
    from any identity of ``pretrain`` (a field one of them lacks counts as differing): the
    near-duplicate leak check of a pretraining world. Returns ``{"identities": len(evaluation),
    "histogram": {distance: count}, "exact_detail_matches": count at distance 0, "fields": the
    fields compared}``."""
    if not pretrain or not evaluation:
        raise ValueError(f"pretrain and evaluation need identities, got {len(pretrain)} and {len(evaluation)}")
    fa, fb = [discrete_fields(i) for i in pretrain], [discrete_fields(i) for i in evaluation]
    fields = sorted({k for f in fa + fb for k in f})
    codes: dict[tuple[str, Any], int] = {}

    def encode(rows: list[dict]) -> np.ndarray:                          # [N, F] int codes
        return np.array([[codes.setdefault((k, f.get(k)), len(codes)) for k in fields] for f in rows], np.int64)

    a, b = encode(fa), encode(fb)
    nearest = np.empty(len(b), np.int64)
    chunk = max(1, 2_000_000 // max(1, a.size))                          # [chunk, Na, F] booleans at a time
    for s in range(0, len(b), chunk):
        nearest[s:s + chunk] = (b[s:s + chunk, None, :] != a[None, :, :]).sum(axis=2).min(axis=1)
    values, counts = np.unique(nearest, return_counts=True)
    return {"identities": len(evaluation), "histogram": {int(v): int(c) for v, c in zip(values, counts)},
            "exact_detail_matches": int((nearest == 0).sum()), "fields": fields}


def nearest_identity_distances(preset_a: str, seed_a: int, preset_b: str, seed_b: int) -> dict[str, Any]:
    """:func:`nearest_distances` of the plans of world ``a`` (pretraining) and world ``b``
    (evaluation): how far each evaluation vehicle is from its nearest pretraining vehicle, in
    differing discrete attributes (body type, colour, grille, lights and the identity details)."""
    return nearest_distances(_plan_identities(preset_a, seed_a), _plan_identities(preset_b, seed_b))
