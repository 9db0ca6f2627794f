"""PKSampler: P x K structure, determinism, sharding over replicas, resumable iteration."""
from __future__ import annotations

from collections import Counter

import pytest

from reidlib.data import PKSampler
from reidlib.errors import ConfigError

# 12 ids with 1..9 images each, interleaved order
PIDS = [pid for rep in range(9) for pid in range(100, 112) if rep < 1 + (pid % 9)]


def test_batches_have_p_ids_k_images_each():
    s = PKSampler(PIDS, p=4, k=3, seed=0)
    assert len(s) == len(PIDS) // 12
    batches = list(s)
    assert len(batches) == len(s)
    for b in batches:
        assert len(b) == 12
        ids = [PIDS[i] for i in b]
        for j in range(4):                                 # id-major blocks of k
            assert len(set(ids[j * 3:(j + 1) * 3])) == 1
        assert len(set(ids)) == 4
        for pid, c in Counter(ids).items():
            n = PIDS.count(pid)
            block = [i for i in b if PIDS[i] == pid]
            if n >= 3:
                assert len(set(block)) == 3                # without replacement when enough images
            else:
                assert set(block) == {i for i, p in enumerate(PIDS) if p == pid}   # all + replacement


def test_ids_used_evenly_and_images_cycled():
    s = PKSampler(PIDS, p=4, k=2, seed=3, batches_per_epoch=30)    # 120 id slots over 12 ids
    counts = Counter()
    per_id_imgs: dict[int, list[int]] = {}
    for b in s.batches(0):
        for j in range(4):
            pid = PIDS[b[2 * j]]
            counts[pid] += 1
            per_id_imgs.setdefault(pid, []).extend(b[2 * j:2 * j + 2])
    assert set(counts.values()) == {10}
    big = max(set(PIDS), key=PIDS.count)
    n = PIDS.count(big)
    first = per_id_imgs[big][:n]
    assert sorted(first) == sorted(i for i, p in enumerate(PIDS) if p == big)   # one full pass first


def test_deterministic_given_seed_and_epoch():
    a, b = PKSampler(PIDS, p=3, k=2, seed=5), PKSampler(PIDS, p=3, k=2, seed=5)
    assert list(a) == list(b)                              # epoch 0
    a.set_epoch(4), b.set_epoch(4)
    assert list(a) == list(b)
    assert PKSampler(PIDS, p=3, k=2, seed=5).batches(0) != PKSampler(PIDS, p=3, k=2, seed=5).batches(1)
    assert PKSampler(PIDS, p=3, k=2, seed=5).batches(0) != PKSampler(PIDS, p=3, k=2, seed=6).batches(0)


def test_epoch_advances_after_exhaustion():
    s = PKSampler(PIDS, p=3, k=2, seed=1)
    ref = PKSampler(PIDS, p=3, k=2, seed=1)
    assert list(s) == ref.batches(0)
    assert s.state_dict() == {"epoch": 1, "offset": 0}
    assert list(s) == ref.batches(1)
    s.set_epoch(2)                                         # same as current: no-op
    assert list(s) == ref.batches(2)


@pytest.mark.parametrize("replicas", [2, 3])
def test_sharding_disjoint_and_covering(replicas):
    single = PKSampler(PIDS, p=3, k=2, seed=2, batches_per_epoch=7)
    shards = [PKSampler(PIDS, p=3, k=2, seed=2, batches_per_epoch=7, num_replicas=replicas, rank=r)
              for r in range(replicas)]
    lengths = {len(s) for s in shards}
    assert lengths == {-(-7 // replicas)}                  # equal length on every rank
    got = [list(s) for s in shards]
    # position j of rank r is global batch j * R + r: shards are disjoint slices of one sequence
    merged = [got[pos % replicas][pos // replicas] for pos in range(replicas * len(shards[0]))]
    assert merged[:7] == list(single)                      # together they cover the single replica's epoch
    positions = [set(range(r, replicas * len(shards[0]), replicas)) for r in range(replicas)]
    assert all(positions[i].isdisjoint(positions[j]) for i in range(replicas) for j in range(i + 1, replicas))
    with pytest.raises(ConfigError):
        PKSampler(PIDS, num_replicas=2, rank=2)


def test_resume_continues_with_unconsumed_batches():
    ref = PKSampler(PIDS, p=3, k=2, seed=9)
    full = [list(ref) for _ in range(2)]                   # epochs 0 and 1 uninterrupted

    s = PKSampler(PIDS, p=3, k=2, seed=9)
    list(s)                                                # epoch 0
    it = iter(s)
    first = [next(it) for _ in range(3)]                   # 3 batches of epoch 1
    state = s.state_dict()
    assert state == {"epoch": 1, "offset": 3}

    resumed = PKSampler(PIDS, p=3, k=2, seed=9)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)                                   # the engine re-announcing the epoch keeps the position
    assert len(resumed) == len(ref) and resumed.remaining() == len(ref) - 3
    rest = list(resumed)
    assert first + rest == full[1]
    assert resumed.state_dict() == {"epoch": 2, "offset": 0}


def test_state_dict_consumed_override_and_validation():
    s = PKSampler(PIDS, p=3, k=2, seed=0)
    it = iter(s)
    for _ in range(4):                                     # a prefetching loader ran ahead
        next(it)
    assert s.state_dict(consumed=2) == {"epoch": 0, "offset": 2}
    r = PKSampler(PIDS, p=3, k=2, seed=0)
    r.load_state_dict(s.state_dict(consumed=2))
    assert list(r) == s.batches(0)[2:]
    with pytest.raises(ValueError):
        r.load_state_dict({"epoch": 0, "offset": 10_000})
    with pytest.raises(ConfigError):
        PKSampler([1, 1, 2], p=3, k=2)
