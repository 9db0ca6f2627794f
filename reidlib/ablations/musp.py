"""The MUSP experiments (Lee, Woo, Lee): Table 5 (the number of attentions n), Table 6 (the ESE
channel attention) and Table 7 (softmax vs sigmoid attention).

Each table's rows are :class:`reidlib.study.Variant` values in a dictionary below — the
experiment's design as data, which the notebooks print before anything is trained and run with
:meth:`reidlib.study.Study.run`.
"""
from __future__ import annotations

from typing import Any


from reidlib.study import Study, Variant

__all__ = ["MUSP_ATTENTION_VARIANTS", "MUSP_ESE_VARIANTS", "MUSP_ACTIVATION_VARIANTS", "musp_variant",
           "musp_attention_figure"]


def musp_variant(note: str = "", **options) -> Variant:
    """MUSP with the given model options (``num_attentions``, ``ese``, ``attention``, ...)."""
    return Variant("musp", {"model.kwargs": dict(options)}, note=note)


#: Table 5: n attentions (softmax, ESE, n - 1 kept parts), plus the baseline for orientation
MUSP_ATTENTION_VARIANTS: dict[Any, Variant] = {
    "baseline": Variant("baseline", note="Luo et al.'s strong baseline"),
    **{n: musp_variant(f"{n - 1} kept part(s) + background", num_attentions=n) for n in (2, 3, 4, 5, 6)},
}

#: Table 6: n = 5 with and without the extended squeeze-and-excitation (eqs. 6-8)
MUSP_ESE_VARIANTS: dict[str, Variant] = {
    "with_ese": musp_variant("ESE over the 4 kept parts", num_attentions=5),
    "without_ese": musp_variant("no channel attention", num_attentions=5, ese=False),
}

#: Table 7: softmax over n = 5 maps (background discarded) vs 4 sigmoid maps (all kept)
MUSP_ACTIVATION_VARIANTS: dict[str, Variant] = {
    "softmax": musp_variant("softmax over 5 maps, background discarded", num_attentions=5),
    "sigmoid": musp_variant("4 independent sigmoid maps, all kept", num_attentions=5, attention="sigmoid"),
}


def musp_attention_figure(study: Study, num_attentions: int = 5, n_images: int = 4):
    """MUSP's attention maps on test images (the paper's Figs. 1 and 5): the n - 1 kept parts and the
    discarded background map, of the first seed's model with ``num_attentions`` attentions."""
    from reidlib.viz import attention_maps

    images, _ = study.example_batch(n=n_images)
    model = study.variant_models(musp_variant(num_attentions=num_attentions))[0].eval()
    names = [f"part {i + 1}" for i in range(num_attentions - 1)] + ["background"]
    return attention_maps(images, model.attention(images).detach(), names=names)
