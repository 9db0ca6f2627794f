"""The generic stand-in's training task: a ResNet trunk pretrained on attribute classification.

The papers start every model from ImageNet, a classification task none of them is trained on;
:func:`train_attributes` is our stand-in for it: :class:`reidlib.models.attributes.AttributeNet`
learns the attributes of SynthVeRi images (:mod:`reidlib.data.attributes`: body type, colour,
grille, lights, view), not their identities, on a folder whose vehicles are disjoint from the
evaluation data. Its trunk, ``trunk_to_torchvision(result.model.base.state_dict())``, is then the
``model.weights`` of every compared model.

Batches: shuffled, fixed size ``data.batch_size``
(:class:`reidlib.data.sampler.RandomBatchSampler`), augmented as the re-ID models' (flip, pad +
crop, random erasing; a horizontal flip keeps every label: SPAN's views do not tell left from
right). ``data.loader`` picks the image path as for re-ID (:func:`reidlib.engine.training.reid_loader`):
the uint8 cache with batched augmentation, or decoding per image. Either way a batch carries the
positions of its images (``batch["index"]``) and the step looks their labels up in one tensor.
Checkpoints, resume and ``model.pt`` are the :class:`reidlib.engine.trainer.Trainer`'s and
:func:`reidlib.engine.training.finish_run`'s, as for every task.
"""
from __future__ import annotations

from reidlib.engine.training import ATTRIBUTES_MODEL as MODEL, AttributeStep, attribute_loader, train_attributes

__all__ = ["AttributeStep", "attribute_loader", "train_attributes", "MODEL"]
