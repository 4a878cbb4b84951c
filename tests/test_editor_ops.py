"""The editor's edit operations on arrays: strokes, fills, relabelling, styles, undo and redo."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest

from pix2pix.editor.ops import (
    HISTORY_BYTES,
    MAX_STROKE_WORK,
    EditDocument,
    LabelSpace,
    WorkLimitError,
    connected_components,
    instances_from_labels,
    new_instance_id,
    region_at,
    stroke_mask,
    stroke_work,
)
from pix2pix.errors import DataError

# synthetic-world ids: 0 void, 1 sky, 4 road, 7 car, 8 person (cars and people are things)
SPACE = LabelSpace(label_nc=10, thing_classes=frozenset({7, 8, 9}), erase_class=0)
SKY, ROAD, CAR, PERSON = 1, 4, 7, 8


def _scene() -> EditDocument:
    """12x10: sky on top, road below; car 7000 in two parts (a pole hides its middle); car 7001; two road patches."""
    label = np.full((10, 12), SKY, dtype=np.int32)
    label[5:, :] = ROAD
    label[5:, 5] = 6  # a pole splits the road into two patches
    label[6:8, 1:4] = CAR
    label[6:8, 6:8] = CAR  # the other half of car 7000, behind the pole
    label[8:10, 9:11] = CAR
    instance = label.copy()
    instance[6:8, 1:4] = 7000
    instance[6:8, 6:8] = 7000
    instance[8:10, 9:11] = 7001
    return EditDocument(label, instance, SPACE)


def _bfs_components(mask: np.ndarray) -> np.ndarray:
    """Reference: 4-connected components numbered in row-major order of their first pixel."""
    out = np.zeros(mask.shape, dtype=np.int32)
    n = 0
    for r, c in zip(*np.nonzero(mask), strict=True):
        if out[r, c]:
            continue
        n += 1
        out[r, c] = n
        todo = deque([(r, c)])
        while todo:
            y, x = todo.popleft()
            for yy, xx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= yy < mask.shape[0] and 0 <= xx < mask.shape[1] and mask[yy, xx] and not out[yy, xx]:
                    out[yy, xx] = n
                    todo.append((yy, xx))
    return out


# ----------------------------------------------------------------------------- masks and components


def test_stroke_mask_is_the_capsule_around_the_polyline():
    mask = stroke_mask((6, 10), [[2.5, 2.5], [7.5, 2.5]], 1.0)
    expected = np.zeros((6, 10), dtype=bool)
    expected[2, 1:9] = True  # the centre row with round caps reaching one pixel past each end
    expected[1, 2:8] = expected[3, 2:8] = True  # pixel centres exactly one pixel from the line
    assert np.array_equal(mask, expected)
    # a click with a tiny brush still paints the pixel under it; points off the canvas are clipped
    dot = stroke_mask((4, 4), [[1.9, 3.2]], 0.1)
    assert dot.sum() == 1 and dot[3, 1]
    assert not stroke_mask((4, 4), [[-20, -20]], 2).any()
    # a bent stroke covers both legs
    bent = stroke_mask((8, 8), [[0.5, 0.5], [6.5, 0.5], [6.5, 6.5]], 0.5)
    assert bent[0, :7].all() and bent[:7, 6].all() and bent.sum() == 13


@pytest.mark.parametrize("points, radius", [([], 2), ([[1, 2, 3]], 2), ([[float("nan"), 1]], 2), ([[1, 1]], 0),
                                            ([[1, 1]], 10_000)])
def test_stroke_mask_refuses_bad_input(points, radius):
    with pytest.raises(DataError):
        stroke_mask((8, 8), points, radius)


@pytest.mark.parametrize("seed", range(6))
def test_connected_components_match_a_flood_fill(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((23, 31)) < (0.3 + 0.1 * seed)
    comps, n = connected_components(mask)
    expected = _bfs_components(mask)
    assert n == expected.max()
    assert np.array_equal(comps, expected)


def test_connected_components_follow_a_winding_snake():
    snake = np.zeros((21, 9), dtype=bool)
    snake[::2, :] = True
    for r in range(1, 21, 2):  # join the rows at alternating ends
        snake[r, 8 if r % 4 == 1 else 0] = True
    comps, n = connected_components(snake)
    assert n == 1 and np.array_equal(comps > 0, snake)
    assert connected_components(np.zeros((3, 3), bool))[1] == 0


def test_instances_from_labels_numbers_each_blob_of_a_thing_class():
    label = np.full((6, 8), ROAD, dtype=np.int32)
    label[1:3, 1:3] = CAR
    label[1:3, 5:7] = CAR
    label[4, 0:2] = PERSON
    label[5, 2] = PERSON  # touches the first person only diagonally: a second person
    inst = instances_from_labels(label, SPACE.thing_classes)
    assert inst[1, 1] == 7000 and inst[1, 5] == 7001
    assert inst[4, 0] == 8000 and inst[5, 2] == 8001
    assert (inst[label == ROAD] == ROAD).all()


def test_new_instance_id_takes_the_next_or_the_smallest_free_k():
    inst = np.array([[7000, 7003, 4], [4, 8000, 1]])
    assert new_instance_id(inst, CAR) == 7004
    assert new_instance_id(inst, PERSON) == 8001
    assert new_instance_id(inst, 9) == 9000
    full = np.array([[7000, 7999]])
    assert new_instance_id(full, CAR) == 7001


def test_region_at_selects_whole_objects_but_connected_patches_of_stuff():
    doc = _scene()
    car = region_at(doc.instance, 1.5, 6.5, doc.label)
    assert car.sum() == 10 and car[6, 7]  # both visible parts of car 7000
    road = region_at(doc.instance, 0.5, 9.5, doc.label)
    assert road.sum() == int((doc.label[:, :5] == ROAD).sum())  # the left road patch only
    assert not road[:, 6:].any()
    with pytest.raises(DataError, match="outside"):
        region_at(doc.instance, 12, 0)


# ----------------------------------------------------------------------------- edits


def test_stroke_of_a_thing_class_makes_a_new_object_and_stuff_writes_its_class():
    doc = _scene()
    before = doc.label.copy()
    assert doc.stroke([[0.5, 1.5], [3.5, 1.5]], 0.5, CAR)
    painted = doc.label != before
    assert painted.sum() == 4 and (doc.instance[painted] == 7002).all()
    assert doc.stroke([[8.5, 2.5]], 0.5, CAR)  # a second stroke: another object
    assert doc.instance[2, 8] == 7003
    assert doc.stroke([[1.5, 6.5]], 0.5, ROAD)  # stuff over a car: the pixel becomes road
    assert doc.label[6, 1] == ROAD and doc.instance[6, 1] == ROAD
    assert doc.stroke([[10.5, 1.5]], 0.5, CAR, grow=7001)  # grow an existing object instead
    assert doc.instance[1, 10] == 7001
    with pytest.raises(DataError, match="cannot grow"):
        doc.stroke([[10.5, 1.5]], 0.5, CAR, grow=8000)
    with pytest.raises(DataError, match="outside"):
        doc.stroke([[1, 1]], 1, 10)
    version = doc.version
    assert not doc.stroke([[0.5, 0.5]], 0.5, SKY)  # nothing changes: no history step
    assert doc.version == version


def test_erase_paints_the_erase_class():
    doc = _scene()
    assert doc.erase([[9.5, 8.5], [10.5, 9.5]], 1.0)
    assert doc.label[9, 10] == 0 and doc.instance[9, 10] == 0


def test_fill_stays_inside_the_connected_region():
    doc = _scene()
    assert doc.fill(0.5, 9.5, 3)  # the left road patch becomes vegetation
    assert (doc.label[5:, :5][doc.label[5:, :5] != CAR] == 3).all()
    assert (doc.label[5:, 6:][(doc.instance[5:, 6:] < 1000)] == ROAD).all()  # the right patch is untouched
    assert doc.label[6, 1] == CAR  # and so are the cars inside it
    assert not doc.fill(0.5, 9.5, 3)  # already vegetation
    assert doc.fill(0.5, 0.5, PERSON)  # the sky becomes one new person object
    assert (doc.instance[doc.label == PERSON] == 8000).all()


def test_relabel_changes_the_object_class_and_drops_its_style():
    doc = _scene()
    assert doc.set_style(7000, 2)
    assert doc.relabel(2.5, 6.5, PERSON)
    assert (doc.label[doc.instance == 8000] == PERSON).all() and (doc.instance == 8000).sum() == 10
    assert not (doc.instance == 7000).any() and doc.styles == {}
    assert not doc.relabel(2.5, 6.5, PERSON)  # already that class
    assert doc.relabel(8.5, 6.5, 3)  # the right road patch alone
    assert doc.label[9, 6] == 3 and doc.label[9, 0] == ROAD


def test_styles_belong_to_live_objects_only():
    doc = _scene()
    assert doc.set_style(7001, 1)
    assert not doc.set_style(7001, 1)
    assert doc.styles == {7001: 1}
    with pytest.raises(DataError, match="not in the map"):
        doc.set_style(7005, 0)
    with pytest.raises(DataError):
        doc.set_style(7001, -1)
    doc.erase([[9.5, 8.5], [10.5, 9.5]], 1.5)  # car 7001 is gone, and so is its style
    assert doc.styles == {}
    doc.stroke([[9.5, 9.5]], 0.5, CAR)
    assert doc.instance[9, 9] == 7001 and doc.styles == {}  # the reused id does not inherit the old style
    assert doc.set_styles({7000: 2, 7001: 0})
    assert doc.styles == {7000: 2, 7001: 0}
    assert doc.set_style(7000, None) and doc.styles == {7001: 0}


def test_undo_and_redo_restore_every_state_exactly():
    doc = _scene()
    first = (doc.label.copy(), doc.instance.copy(), dict(doc.styles))
    doc.stroke([[0.5, 0.5], [11.5, 4.5]], 1.2, CAR)
    doc.set_style(7002, 1)
    doc.fill(0.5, 9.5, 3)
    doc.relabel(1.5, 6.5, PERSON)
    doc.erase([[6.5, 6.5]], 2)
    final = (doc.label.copy(), doc.instance.copy(), dict(doc.styles))
    undone = []
    while doc.can_undo:
        assert doc.undo()
        undone.append((doc.label.copy(), doc.instance.copy(), dict(doc.styles)))
    assert not doc.undo() and len(undone) == 5
    assert np.array_equal(doc.label, first[0]) and np.array_equal(doc.instance, first[1]) and doc.styles == first[2]
    redone = []
    while doc.can_redo:
        assert doc.redo()
        redone.append((doc.label.copy(), doc.instance.copy(), dict(doc.styles)))
    assert np.array_equal(doc.label, final[0]) and np.array_equal(doc.instance, final[1]) and doc.styles == final[2]
    # redo walks back through exactly the states undo passed
    for a, b in zip(redone[:-1], reversed(undone[:-1]), strict=True):
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]
    assert redone[0][2] == {} and redone[1][2] == {7002: 1}
    doc.undo()
    doc.stroke([[0.5, 0.5]], 0.5, ROAD)  # a new edit drops the redo branch
    assert not doc.can_redo


def test_history_is_bounded():
    doc = EditDocument.blank(8, 8, SPACE, fill=SKY, history_limit=3)
    for i in range(6):
        doc.stroke([[i + 0.5, 0.5]], 0.5, ROAD)
    undos = 0
    while doc.undo():
        undos += 1
    assert undos == 3 and (doc.label[0, :3] == ROAD).all() and (doc.label[0, 3:] == SKY).all()


def test_history_is_bounded_in_bytes():
    # the case: full-canvas fills of a 1024x1024 map added 14 MB each without bound
    assert HISTORY_BYTES == 256 << 20
    doc = EditDocument.blank(1024, 1024, SPACE, fill=SKY, history_bytes=64 << 20)
    step = 1024 * 1024 * 8  # one label and one instance box of int32: what undo swaps back in
    for k in range(12):
        assert doc.fill(0, 0, ROAD if k % 2 == 0 else SKY)
        assert doc.history_nbytes <= 64 << 20
    kept = 7  # 64 MiB holds seven 8 MiB steps with their bookkeeping
    assert doc.undo_steps == kept and doc.dropped_steps == 12 - kept and doc.history_nbytes == pytest.approx(
        kept * step, rel=0.01)
    while doc.undo():
        pass
    assert (doc.label == ROAD).all()  # the oldest state still held (after the fifth fill, k = 4), exactly
    assert doc.redo_steps == kept and doc.history_nbytes == pytest.approx(kept * step, rel=0.01)  # redo costs the same
    # a bound smaller than one step keeps none of it (the edit itself happens)
    tiny = EditDocument.blank(64, 64, SPACE, fill=SKY, history_bytes=1000)
    assert tiny.fill(0, 0, ROAD) and (tiny.label == ROAD).all() and not tiny.can_undo and tiny.dropped_steps == 1


def test_dropping_the_oldest_step_keeps_the_rest_exact():
    doc = EditDocument.blank(8, 8, SPACE, fill=SKY)
    states = [doc.label.copy()]
    for i in range(4):
        doc.stroke([[i + 0.5, 0.5]], 0.5, ROAD)
        states.append(doc.label.copy())
    first = doc.oldest_step
    assert doc.drop_oldest_step() > 0 and doc.oldest_step > first and doc.dropped_steps == 1
    for expected in reversed(states[1:-1]):
        assert doc.undo() and np.array_equal(doc.label, expected)
    assert not doc.undo()  # the first step is gone: the blank canvas cannot come back
    assert doc.redo() and np.array_equal(doc.label, states[2])


def test_stroke_work_is_estimated_and_bounded():
    shape = (256, 256)
    assert stroke_work(shape, [[10, 10]], 2) == 5 * 5 + 4096  # one point: the box of pixels 8..12, and overhead
    assert stroke_work(shape, [[10, 10], [20, 10]], 2) == 15 * 5 + 4096
    assert stroke_work(shape, [[-100, -100]], 2) == 4096  # boxes are clipped to the map
    huge = [[(i * 0.05) % 4096, (i * 0.037) % 4096] for i in range(20_000)]
    assert stroke_work((4096, 4096), huge, 512) > 100 * MAX_STROKE_WORK  # the two-minute stroke
    with pytest.raises(WorkLimitError, match="smaller brush"):
        stroke_mask((4096, 4096), huge, 512)
    doc = EditDocument.blank(64, 64, SPACE, fill=SKY, max_stroke_work=10_000)
    with pytest.raises(WorkLimitError):
        doc.stroke([[i, 30] for i in range(60)], 8, ROAD)
    assert (doc.label == SKY).all() and not doc.can_undo
    assert doc.stroke([[30, 30]], 8, ROAD)  # a small one is fine


def test_documents_check_their_maps():
    label = np.zeros((4, 4), dtype=np.int32)
    with pytest.raises(DataError, match="outside"):
        EditDocument(label + 10, None, SPACE)
    with pytest.raises(DataError, match="same size"):
        EditDocument(label, np.zeros((4, 5), np.int32), SPACE)
    with pytest.raises(DataError, match="integer"):
        EditDocument(label.astype(float), None, SPACE)
    doc = EditDocument(label, None, SPACE, styles={7000: 1, 3: 2})  # styles of absent ids are dropped
    assert doc.styles == {}
    blank = EditDocument.blank(5, 3, SPACE)
    assert blank.shape == (3, 5) and (blank.label == SPACE.erase_class).all()
