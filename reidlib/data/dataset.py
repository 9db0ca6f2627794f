"""torch ``Dataset`` over :class:`~reidlib.data.records.Record` lists, identity relabelling, and the
image transforms of the "strong baseline" (Luo et al., CVPRW 2019 "Bag of Tricks"):

* train: resize to ``(height, width)``, random horizontal flip, zero-pad ``pad`` px + random crop
  back to ``(height, width)``, to float tensor in [0, 1], ImageNet normalisation, random erasing
  (Zhong et al.; area 2-40 %, aspect 0.3-3.3, erased pixels set to 0 after normalisation,
  i.e. the mean colour);
* test: resize + to tensor + normalisation.
"""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import torch
from torch.utils.data import Dataset

from reidlib.data.records import Record
from reidlib.errors import DataFormatError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def relabel(records: Sequence[Record]) -> dict[int, int]:
    """``{pid: label}`` mapping the distinct pids of ``records``, in sorted pid order, to 0..C-1
    (the class labels of the ID classifier)."""
    return {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}


def read_image_rgb(path: str):
    """Read an image as an RGB ``uint8`` numpy array ``[H, W, 3]`` (cv2 decodes BGR; converted).
    Unreadable / missing file -> DataFormatError naming it."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(path, "image cannot be read (missing or not a decodable image)",
                              expected="a readable JPEG/PNG image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class ImageDataset(Dataset):
    """Items ``{"img": Tensor[3, H, W], "pid": int, "camid": int, "view": int, "index": int}``.

    ``pid`` is ``pid_map[record.pid]`` when ``pid_map`` is given (e.g. :func:`relabel` for
    training), else the raw pid; ``view`` is the SPAN 5-way view class or -1 when unknown;
    ``index`` is the position in ``records``. ``transform`` receives a PIL RGB image and must
    return a tensor (see :func:`build_transforms`); without one the image becomes a float tensor
    in [0, 1] at its native size.
    """

    def __init__(self, records: Sequence[Record], transform=None, pid_map: Optional[Mapping[int, int]] = None):
        self.records = list(records)
        self.transform = transform
        self.pid_map = dict(pid_map) if pid_map is not None else None
        if self.pid_map is not None:
            missing = sorted({r.pid for r in self.records} - set(self.pid_map))
            if missing:
                raise KeyError(f"pid_map has no label for pid(s) {missing[:5]}{' ...' if len(missing) > 5 else ''}")

    def __len__(self) -> int:
        return len(self.records)

    @property
    def pids(self) -> list[int]:
        """Per-item pids as returned by ``__getitem__`` (relabelled if a map is given); feed to PKSampler."""
        if self.pid_map is None:
            return [r.pid for r in self.records]
        return [self.pid_map[r.pid] for r in self.records]

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        rgb = read_image_rgb(r.path)
        if self.transform is None:
            img = torch.from_numpy(rgb).permute(2, 0, 1).contiguous().float().div_(255.0)
        else:
            from PIL import Image

            img = self.transform(Image.fromarray(rgb))
            if not isinstance(img, torch.Tensor):
                from torchvision.transforms.functional import pil_to_tensor

                img = pil_to_tensor(img).float().div_(255.0)
            img = img.as_subclass(torch.Tensor)   # plain tensor (v2 returns tv_tensors.Image)
        pid = self.pid_map[r.pid] if self.pid_map is not None else r.pid
        return {"img": img, "pid": int(pid), "camid": int(r.camid),
                "view": -1 if r.view is None else int(r.view), "index": int(index)}


def build_transforms(height: int = 256, width: int = 256, train: bool = True, flip_p: float = 0.5,
                     pad: int = 10, random_erasing_p: float = 0.5,
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """torchvision (v2) transform of the strong-baseline recipe (see module doc).

    Train: Resize -> RandomHorizontalFlip(flip_p) -> Pad(pad, zeros) + RandomCrop -> float
    [0, 1] -> Normalize(mean, std) -> RandomErasing(random_erasing_p). Steps with probability 0 or
    ``pad=0`` are left out. Test (``train=False``): Resize -> float -> Normalize. Input: a PIL
    image or a uint8 tensor ``[3, H, W]``; output: float tensor ``[3, height, width]``.
    """
    from torchvision.transforms import v2 as T

    size = (int(height), int(width))
    steps: list = [T.ToImage(), T.Resize(size, antialias=True)]
    if train:
        if flip_p > 0:
            steps.append(T.RandomHorizontalFlip(p=flip_p))
        if pad > 0:
            steps += [T.Pad(int(pad), fill=0), T.RandomCrop(size)]
    steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(mean=list(mean), std=list(std))]
    if train and random_erasing_p > 0:
        steps.append(T.RandomErasing(p=random_erasing_p, scale=(0.02, 0.4), ratio=(0.3, 1 / 0.3), value=0))
    return T.Compose(steps)
