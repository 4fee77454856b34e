import numpy as np
import pytest

from streamseg.instances import Instances
from streamseg.render import OverlayRenderer, color_for

NAMES = ("__background__", "circle", "rectangle", "triangle")


def _image(height=120, width=200, value=90):
    return np.full((height, width, 3), value, np.uint8)


def _instances(boxes, height=120, width=200, class_ids=None, track_ids=None, scores=None):
    """One instance per xyxy box, its mask filling the box (clipped to the image)."""
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    masks = np.zeros((len(boxes), height, width), bool)
    for mask, (x0, y0, x1, y1) in zip(masks, boxes.astype(int)):
        mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    n = len(boxes)
    return Instances.from_masks(
        boxes=boxes,
        scores=np.full(n, 0.97, np.float32) if scores is None else np.array(scores, np.float32),
        class_ids=np.ones(n, np.int64) if class_ids is None else np.array(class_ids, np.int64),
        masks=masks,
        track_ids=None if track_ids is None else np.array(track_ids, np.int64),
    )


def test_color_for_is_stable_and_separates_neighbours():
    assert color_for(12) == color_for(12)
    assert all(0 <= c <= 255 for c in color_for(987654))
    colors = [np.array(color_for(k), float) for k in range(12)]
    for k in range(11):
        assert np.abs(colors[k] - colors[k + 1]).sum() > 60, (k, colors[k], colors[k + 1])
    assert len({color_for(k) for k in range(64)}) == 64


def test_masked_pixels_are_tinted_and_far_pixels_untouched():
    image = _image()
    image[::2, ::3] = 30  # some texture, so an accidental whole-image copy of a constant would show
    instances = _instances([[60, 40, 120, 90]])
    out = OverlayRenderer(NAMES, show_boxes=False, show_labels=False).annotate(image, instances)

    inside = out[50:80, 70:110].astype(int)
    expected = (image[50:80, 70:110] * 0.55 + np.array(color_for(1)) * 0.45).astype(int)
    assert np.abs(inside - expected).max() <= 1
    # Far from the object (beyond contour and its antialiasing) nothing changes.
    assert np.array_equal(out[:30], image[:30])
    assert np.array_equal(out[:, :50], image[:, :50])
    assert np.array_equal(out[100:], image[100:])


def test_mask_pixels_beyond_the_box_are_blended_too():
    masks = np.zeros((1, 120, 200), bool)
    masks[0, 40:90, 60:123] = True  # a sliver just outside the box, as torchvision pastes
    instances = Instances.from_masks(np.array([[60, 40, 120, 90]], np.float32), np.ones(1, np.float32),
                                     np.ones(1, np.int64), masks)
    out = OverlayRenderer(NAMES, show_boxes=False, show_labels=False).annotate(_image(), instances)
    assert not np.array_equal(out[60, 122], _image()[60, 122])
    assert np.array_equal(out[60, 130:], _image()[60, 130:])


def test_input_is_not_modified_and_output_is_rgb_uint8():
    image = _image()
    before = image.copy()
    out = OverlayRenderer(NAMES).annotate(image, _instances([[10, 10, 50, 50], [30, 30, 90, 70]]))
    assert np.array_equal(image, before)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert out is not image and not np.shares_memory(out, image)


def test_empty_instances_give_an_identical_copy():
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = OverlayRenderer(NAMES).annotate(image, Instances.empty(48, 64))
    assert np.array_equal(out, image)
    assert not np.shares_memory(out, image)


def test_same_track_keeps_its_colour_across_frames_and_renderers():
    # Frame 1: track 7 is a circle at the left; frame 2: it is labelled another class and moved.
    first = _instances([[10, 10, 60, 60], [100, 10, 150, 60]], class_ids=[1, 2], track_ids=[7, 3])
    second = _instances([[120, 50, 170, 100]], class_ids=[3], track_ids=[7])
    image = _image(value=0)
    a = OverlayRenderer(NAMES, alpha=1.0, show_boxes=False, show_labels=False).annotate(image, first)
    b = OverlayRenderer(NAMES, alpha=1.0, show_boxes=False, show_labels=False).annotate(image, second)
    assert tuple(a[35, 35]) == tuple(b[75, 145]) == color_for(7)
    assert tuple(a[35, 125]) == color_for(3)


def test_untracked_instances_are_coloured_by_class():
    instances = _instances([[10, 10, 60, 60], [100, 10, 150, 60]], class_ids=[2, 2], track_ids=[-1, 5])
    out = OverlayRenderer(NAMES, alpha=1.0, show_boxes=False, show_labels=False).annotate(_image(), instances)
    assert tuple(out[35, 35]) == color_for(2)
    assert tuple(out[35, 125]) == color_for(5)


def test_first_instance_is_drawn_on_top():
    instances = _instances([[20, 20, 80, 80], [40, 40, 120, 100]], class_ids=[1, 2])
    out = OverlayRenderer(NAMES, alpha=1.0, show_boxes=False, show_labels=False).annotate(_image(), instances)
    assert tuple(out[60, 60]) == color_for(1)
    assert tuple(out[90, 110]) == color_for(2)


def test_labels_and_boxes_are_drawn():
    instances = _instances([[50, 60, 150, 110]], track_ids=[12])
    bare = OverlayRenderer(NAMES, show_boxes=False, show_labels=False).annotate(_image(), instances)
    labelled = OverlayRenderer(NAMES, show_boxes=False, show_labels=True).annotate(_image(), instances)
    boxed = OverlayRenderer(NAMES, show_boxes=True, show_labels=False).annotate(_image(), instances)
    # The label tag sits above the box's top-left corner.
    assert not np.array_equal(labelled[40:60, 50:150], bare[40:60, 50:150])
    assert np.array_equal(labelled[112:], bare[112:])
    # The box outline adds pixels along its edges that the mask contour alone does not have.
    assert not np.array_equal(boxed, bare)


def test_label_text_names_track_class_and_score():
    renderer = OverlayRenderer(NAMES)
    tracked = _instances([[0, 0, 10, 10], [5, 5, 20, 20]], class_ids=[1, 9], track_ids=[12, -1], scores=[0.97, 0.5])
    assert renderer._label(tracked, 0) == "#12 circle 0.97"
    assert renderer._label(tracked, 1) == "9 0.50"  # unknown class ids fall back to the number
    assert renderer._label(_instances([[0, 0, 10, 10]]), 0) == "circle 0.97"


@pytest.mark.parametrize(
    ("box", "visible"),
    [
        ([0, 0, 200, 120], True),  # the whole image
        ([-30, -20, 15, 12], True),  # overflowing the top-left corner
        ([185, 110, 260, 190], True),  # overflowing the bottom-right corner
        ([190, 0, 200, 5], True),  # a sliver in the top-right corner, too small for its label
        ([250, 150, 300, 200], False),  # entirely outside
        ([40, 40, 40, 40], False),  # degenerate
    ],
)
def test_boxes_at_and_beyond_the_borders(box, visible):
    image = _image()
    out = OverlayRenderer(NAMES, thickness=3).annotate(image, _instances([box], track_ids=[123456]))
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(out, image) != visible


def test_label_of_a_box_at_the_top_edge_stays_inside_the_image():
    instances = _instances([[150, 0, 199, 30]], track_ids=[42])
    bare = OverlayRenderer(NAMES, show_boxes=False, show_labels=False).annotate(_image(), instances)
    out = OverlayRenderer(NAMES, show_boxes=False).annotate(_image(), instances)
    changed_rows, changed_cols = np.nonzero((out != bare).any(axis=2))
    assert len(changed_rows) > 0
    # No room above: the tag goes inside the box, shifted left so its text is not cut at the right edge.
    assert changed_rows.min() == 0 and changed_cols.min() < 150


def test_rejects_masks_of_another_size():
    with pytest.raises(ValueError, match="do not match"):
        OverlayRenderer(NAMES).annotate(_image(60, 80), _instances([[1, 1, 5, 5]]))


def test_rejects_bad_options():
    with pytest.raises(ValueError):
        OverlayRenderer(NAMES, alpha=1.5)
    with pytest.raises(ValueError):
        OverlayRenderer(NAMES, thickness=0)


def test_counting_lines_point_to_their_in_side_and_zones_are_outlined():
    from streamseg.count import Tally, parse_lines, parse_zones

    canvas = _image(value=0)
    renderer = OverlayRenderer(NAMES)
    lines = parse_lines(["100,20,100,110:gate"])  # the "in" side (sign > 0) is x < 100
    zones = parse_zones(["150,60,190,60,190,110,150,110:dock"])
    renderer.draw_counting(canvas, lines, zones, Tally(lines={"gate": (3, 1)}, zones={"dock": 2}))
    lit = canvas.max(axis=2) > 0
    assert lit[40:100, 99:102].all()  # the line itself
    assert lit[60:70, 80:98].any() and not lit[60:70, 103:120].any()  # the arrow, on the in side only
    assert lit[80:100, 150].all() and not lit[75:95, 160:180].any()  # zone outline, hollow inside
    assert lit[:20].any()  # the counters' tags


def test_trails_are_drawn_in_each_tracks_colour():
    canvas = _image(value=0)
    OverlayRenderer(NAMES).draw_trails(canvas, {7: [(20.0, 20.0), (60.0, 20.0), (60.0, 80.0)], 8: [(150.0, 50.0)]})
    color = np.array(color_for(7))
    assert (np.abs(canvas[20, 30:50].astype(int) - color).sum(axis=1) < 60).all()  # along the first segment
    assert (np.abs(canvas[40:70, 60].astype(int) - color).sum(axis=1) < 60).all()
    assert canvas[45:55, 145:155].max() == 0  # a single point is no path


@pytest.mark.parametrize("seed", range(6))
def test_blending_box_groups_apart_paints_what_one_pass_over_all_would(seed):
    rng = np.random.default_rng(seed)
    height, width, count = 240, 320, int(rng.integers(1, 12))
    corners = rng.integers(0, [width - 4, height - 4], (count, 2))
    sizes = rng.integers(4, 90, (count, 2))
    boxes = np.concatenate([corners, np.minimum(corners + sizes, [width, height])], 1).astype(np.float32)
    masks = rng.random((count, height, width)) < 0.7
    instances = Instances.from_masks(boxes, np.ones(count, np.float32), np.ones(count, np.int64), masks)
    renderer = OverlayRenderer(["bg", "thing"])
    image = rng.integers(0, 256, (height, width, 3), np.uint8)
    colors = [color_for(i) for i in range(count)]
    grouped, whole = image.copy(), image.copy()
    renderer._blend_masks(grouped, instances, colors)
    renderer._blend_group(whole, instances.crops, instances.crop_boxes, colors)
    assert np.array_equal(grouped, whole)
    assert not np.array_equal(grouped, image)
