"""reidlib.viz.ranked_list renders on tiny generated images (Agg backend); worst_queries."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from reidlib.metrics import evaluate_rank  # noqa: E402
from reidlib.viz import ranked_list  # noqa: E402
from reidlib.viz.ranked import GREEN, GREY, RED, worst_queries  # noqa: E402


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(7):
        img = rng.integers(0, 255, (24 + i, 32, 3), dtype=np.uint8)
        p = tmp_path / f"{i:04d}_c00{i % 3}.png"
        cv2.imwrite(str(p), img)
        paths.append(str(p))
    return paths


def test_ranked_list_renders_with_borders(images):
    import matplotlib.pyplot as plt

    query, gallery = images[0], images[1:]
    dist = np.array([0.5, 0.1, 0.3, 0.2, 0.9, 0.4])
    g_pids = np.array([1, 1, 2, 1, 3, 2])
    g_cams = np.array([0, 1, 0, 2, 1, 1])
    fig = ranked_list(query, gallery, dist, 1, g_pids, 0, g_cams, topk=4, tile_size=(48, 40))
    try:
        ax = fig.axes[0]
        strip = ax.images[0].get_array()
        assert strip.shape[0] > 48 and strip.shape[2] == 3
        # order by distance: g1 (id 1, cam 1: true), g3 (id 1, cam 2: true), g2 (id 2: wrong),
        # g5 (id 2: wrong); border colours at each tile's top-left corner
        tile_w, gap = 40, 5
        x0 = tile_w + gap
        step = tile_w + gap // 2
        corners = [tuple(strip[0, x0 + i * step]) for i in range(4)]
        assert corners == [GREEN, GREEN, RED, RED]
        texts = [t.get_text() for t in ax.texts]
        assert texts[0] == "query" and texts[1].startswith("#1") and texts[3].startswith("#3")
        fig.canvas.draw()
    finally:
        plt.close(fig)


def test_ranked_list_junk_greyed_or_skipped_and_ax(images):
    import matplotlib.pyplot as plt

    arrays = [cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB) for p in images]
    dist = np.array([0.1, 0.2, 0.3])
    g_pids = np.array([4, 4, 5])
    g_cams = np.array([2, 1, 2])                     # gallery 0: same id + same camera = junk
    fig, ax = plt.subplots()
    try:
        out = ranked_list(arrays[0], arrays[1:4], dist, 4, g_pids, 2, g_cams, topk=3, ax=ax,
                          tile_size=(32, 32))
        assert out is fig
        strip = ax.images[0].get_array()
        x0 = 32 + 4
        assert tuple(strip[0, x0]) == GREY
        labels = [t.get_text() for t in ax.texts]
        assert labels[1].startswith("junk") and labels[2].startswith("#1")
        ax.clear()
        ranked_list(arrays[0], arrays[1:4], dist, 4, g_pids, 2, g_cams, topk=3, ax=ax,
                    skip_junk=True, tile_size=(32, 32))
        labels = [t.get_text() for t in ax.texts]
        assert len(labels) == 3 and labels[1].startswith("#1")
    finally:
        plt.close(fig)


def test_ranked_list_errors(images, tmp_path):
    with pytest.raises(ValueError, match="same length"):
        ranked_list(images[0], images[1:3], np.zeros(3), 1, [1, 2, 3], 0, [0, 1, 2])
    with pytest.raises(FileNotFoundError):
        ranked_list(str(tmp_path / "missing.jpg"), images[1:3], np.zeros(2), 1, [1, 2], 0, [1, 1])


def test_worst_queries():
    d = np.array([[0.1, 0.9, 0.5],          # query 0: match first -> AP 1
                  [0.9, 0.1, 0.5],          # query 1: match last of 3 -> AP 1/3
                  [0.2, 0.1, 0.3],          # query 2: match second -> AP 1/2
                  [0.2, 0.1, 0.3]])         # query 3: id absent -> skipped
    qp, gp = [1, 1, 1, 9], [1, 2, 3]
    qc, gc = [0, 0, 0, 0], [1, 1, 1]
    res = evaluate_rank(d, qp, gp, qc, gc)
    worst = worst_queries(res, n=2)
    assert [i for i, _ in worst] == [1, 2]
    assert worst[0][1] == pytest.approx(1 / 3)
    assert worst_queries(d, qp, gp, qc, gc, n=10) == worst_queries(res, n=10)
    assert len(worst_queries(res, n=10)) == 3
